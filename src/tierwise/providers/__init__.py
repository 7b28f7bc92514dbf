"""Providers: one protocol (complete, stream, embed), real adapters over the official SDKs."""

from tierwise.core import Message, ToolCall, ToolSpec
from tierwise.providers.base import Completion, Embeddings, Provider, Request, StreamChunk
from tierwise.providers.registry import Providers, build_provider

__all__ = [
    "Completion",
    "Embeddings",
    "Message",
    "Provider",
    "Providers",
    "Request",
    "StreamChunk",
    "ToolCall",
    "ToolSpec",
    "build_provider",
]
