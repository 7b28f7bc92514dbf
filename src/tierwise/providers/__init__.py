"""Providers: one protocol (complete, stream, embed), real adapters over the official SDKs."""

from tierwise.providers.base import (
    Completion,
    Embeddings,
    Message,
    Provider,
    Request,
    StreamChunk,
    ToolCall,
    ToolSpec,
)
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
