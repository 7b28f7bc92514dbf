"""The Provider protocol and the plain data that crosses it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tierwise.core import Message, ToolCall, ToolSpec, Usage
from tierwise.models.spec import ModelSpec


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
    # None: the provider's own timeout (``timeout_s`` under [providers.X]) applies.
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage
    served_model: str | None
    latency_s: float
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    # What an adapter knows beside the usage (e.g. LiteLLM's own cost): written into the call's metadata.
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a stream; the last chunk carries ``usage`` and ``served_model``."""

    delta: str = ""
    usage: Usage | None = None
    served_model: str | None = None
    finish_reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # as Completion.extra, on the last chunk


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


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a provider asked us to wait (``retry-after-ms`` or ``retry-after``), if it said."""
    if not headers:
        return None
    for key in ("retry-after-ms", "retry-after"):
        value = headers.get(key)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            return None
        return seconds / 1000 if key == "retry-after-ms" else seconds
    return None
