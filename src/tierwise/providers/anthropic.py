"""Anthropic's Messages API via the official ``anthropic`` SDK."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from tierwise.core import Message, ToolCall, Usage
from tierwise.errors import ProviderError
from tierwise.models.spec import ModelSpec
from tierwise.providers.base import Completion, Embeddings, Request, StreamChunk, retry_after_s


class AnthropicProvider:
    """Adapter over ``anthropic.AsyncAnthropic``; structured output through a forced tool call."""

    def __init__(
        self, name: str, *, api_key: str, base_url: str | None = None, timeout_s: float = 60.0
    ) -> None:
        self.name = name
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
        )

    def _kwargs(self, request: Request) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        kw: dict[str, Any] = {
            "model": request.model.name,
            "max_tokens": request.max_output_tokens,
            "messages": [_to_anthropic(m) for m in request.messages if m.role != "system"],
        }
        if system:
            kw["system"] = system
        if request.timeout_s is not None:
            kw["timeout"] = request.timeout_s
        if request.temperature is not None:
            kw["temperature"] = request.temperature
        tools = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        if request.json_schema is not None:
            # Anthropic has no response_format: a single forced tool whose input is the schema.
            tools.append(
                {
                    "name": request.schema_name,
                    "description": "Return the answer in this structure.",
                    "input_schema": request.json_schema,
                }
            )
            kw["tool_choice"] = {"type": "tool", "name": request.schema_name}
        if tools:
            kw["tools"] = tools
        return kw

    async def complete(self, request: Request) -> Completion:
        started = time.perf_counter()
        try:
            resp = await self._client.messages.create(**self._kwargs(request))
        except anthropic.AnthropicError as exc:
            raise _translate(exc, self.name) from None
        text_parts: list[str] = []
        calls: list[ToolCall] = []
        for block in resp.content:
            if block.type == "text":
                text_parts.append(block.text)
            elif block.type == "tool_use":
                if request.json_schema is not None and block.name == request.schema_name:
                    text_parts.append(json.dumps(block.input))
                else:
                    calls.append(ToolCall(id=block.id, name=block.name, arguments=json.dumps(block.input)))
        return Completion(
            text="".join(text_parts),
            usage=_usage(resp.usage),
            served_model=resp.model,
            latency_s=time.perf_counter() - started,
            tool_calls=tuple(calls),
            finish_reason=resp.stop_reason,
        )

    async def stream(self, request: Request) -> AsyncIterator[StreamChunk]:
        try:
            async with self._client.messages.stream(**self._kwargs(request)) as stream:
                async for text in stream.text_stream:
                    yield StreamChunk(delta=text)
                final = await stream.get_final_message()
        except anthropic.AnthropicError as exc:
            raise _translate(exc, self.name) from None
        yield StreamChunk(
            usage=_usage(final.usage), served_model=final.model, finish_reason=final.stop_reason
        )

    async def embed(self, model: ModelSpec, texts: list[str]) -> Embeddings:
        raise ProviderError(
            f"provider {self.name!r} (anthropic) has no embeddings API: use an embeddings model of "
            "another provider (e.g. local/e5-small or openai/text-embedding-3-small)"
        )

    async def aclose(self) -> None:
        await self._client.close()


def _to_anthropic(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}],
        }
    if m.tool_calls:
        content: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        content += [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments or "{}")}
            for c in m.tool_calls
        ]
        return {"role": "assistant", "content": content}
    return {"role": m.role, "content": m.content}


def _usage(u: Any) -> Usage:
    cached = getattr(u, "cache_read_input_tokens", None) or 0
    created = getattr(u, "cache_creation_input_tokens", None) or 0
    # Anthropic reports cached reads apart from input; our Usage counts input including cached.
    return Usage(
        input_tokens=(u.input_tokens or 0) + cached + created,
        cached_input_tokens=cached,
        output_tokens=u.output_tokens or 0,
    )


def _translate(exc: anthropic.AnthropicError, provider: str) -> ProviderError:
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError(f"provider {provider!r} timed out", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(f"provider {provider!r} unreachable: {exc}", retryable=True)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        return ProviderError(
            f"provider {provider!r} answered HTTP {status}: {str(exc)[:300]}",
            status=status,
            retryable=status in (408, 409, 429, 529) or status >= 500,
            retry_after_s=retry_after_s(exc.response.headers),
        )
    return ProviderError(f"provider {provider!r} failed: {exc}", retryable=True)
