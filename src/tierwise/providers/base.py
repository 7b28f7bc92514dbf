"""The Provider protocol and the plain data that crosses it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from tierwise.models.spec import ModelSpec, Usage

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    images: tuple[str, ...] = ()  # data: or https: URLs, for vision models

    def to_openai(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": self.role}
        if self.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": self.content}]
            parts += [{"type": "image_url", "image_url": {"url": u}} for u in self.images]
            msg["content"] = parts
        else:
            msg["content"] = self.content
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            msg["tool_call_id"] = self.tool_call_id
        return msg


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: name, description, JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True, slots=True)
class Request:
    """One completion request, already routed to ``model``."""

    model: ModelSpec
    messages: tuple[Message, ...]
    max_output_tokens: int
    json_schema: dict[str, Any] | None = None
    schema_name: str = "output"
    tools: tuple[ToolSpec, ...] = ()
    temperature: float | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage
    served_model: str | None
    latency_s: float
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a stream; the last chunk carries ``usage`` and ``served_model``."""

    delta: str = ""
    usage: Usage | None = None
    served_model: str | None = None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    served_model: str | None = None
    latency_s: float = 0.0


@runtime_checkable
class Provider(Protocol):
    """What every adapter implements. Errors are raised as ``ProviderError`` with ``retryable`` set."""

    name: str

    async def complete(self, request: Request) -> Completion: ...

    def stream(self, request: Request) -> AsyncIterator[StreamChunk]: ...

    async def embed(self, model: ModelSpec, texts: list[str]) -> Embeddings: ...

    async def aclose(self) -> None: ...
