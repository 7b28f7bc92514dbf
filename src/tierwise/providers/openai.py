"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp's server), via the official SDK."""

from __future__ import annotations

import importlib.util
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson

from tierwise.core import ToolCall, Usage
from tierwise.errors import ProviderError
from tierwise.models.spec import ModelSpec
from tierwise.models.tokens import count_text
from tierwise.providers.base import Completion, Embeddings, Request, StreamChunk, retry_after_s

OPENAI_BASE_URL = "https://api.openai.com/v1"
# The SDK gained DefaultAioHttpClient in 2025; older SDKs, or no aiohttp, keep the httpx pool.
_HAS_AIOHTTP = hasattr(openai, "DefaultAioHttpClient") and importlib.util.find_spec("aiohttp") is not None
# Raw bytes go in `content` where the SDK has it (newer SDKs warn on bytes in `body`, on every call).
_BYTES_ARG = "content" if "content" in inspect.signature(openai.AsyncOpenAI.post).parameters else "body"


class OpenAIProvider:
    """Adapter over ``openai.AsyncOpenAI``. Retries are off here: the runtime owns the one retry loop."""

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        structured_output: str = "auto",
        max_connections: int = 200,
    ) -> None:
        self.name = name
        self._official = base_url is None or base_url.rstrip("/") == OPENAI_BASE_URL
        # The SDK's own HTTP client classes. With aiohttp installed (the SDK's `aiohttp` extra, a core
        # dependency of ours) its aiohttp transport: ~0.5 ms less CPU per call than the httpx pool, which is
        # the floor of a proxy hop or a batch. The limits type is whatever that client takes.
        limits_type = type(openai.DEFAULT_CONNECTION_LIMITS)
        limits = limits_type(max_connections=max_connections, max_keepalive_connections=max_connections)
        client_cls = openai.DefaultAioHttpClient if _HAS_AIOHTTP else openai.DefaultAsyncHttpxClient
        http = client_cls(limits=limits, timeout=timeout_s)
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0, http_client=http
        )
        self._structured = structured_output if structured_output != "auto" else None

    # --- requests -----------------------------------------------------------------------------------

    def _kwargs(self, request: Request, mode: str | None) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": request.model.name,
            "messages": [m.to_openai() for m in request.messages],
        }
        # OpenAI's reasoning models take max_completion_tokens; most compatible servers only max_tokens.
        kw["max_completion_tokens" if self._official else "max_tokens"] = request.max_output_tokens
        if request.timeout_s is not None:
            kw["timeout"] = request.timeout_s
        if request.temperature is not None:
            kw["temperature"] = request.temperature
        if request.tools:
            kw["tools"] = [t.to_openai() for t in request.tools]
        if request.json_schema is not None:
            if (mode or "json_schema") == "json_schema":
                kw["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": request.schema_name, "schema": request.json_schema},
                }
            else:  # llama.cpp's server: json_object plus the schema, compiled to a grammar
                kw["response_format"] = {"type": "json_object", "schema": request.json_schema}
        return kw

    async def _post(self, kw: dict[str, Any]) -> dict[str, Any]:
        """POST /chat/completions through the SDK's own client (auth, base URL, errors as the SDK raises
        them) without its typed request transform and response models: a third of the SDK's CPU per call,
        which is the floor of a proxy or a batch. The body is the API's JSON, parsed with orjson."""
        timeout = kw.pop("timeout", None)
        options = {"timeout": timeout} if timeout is not None else {}
        # The SDK sends bytes as they are: orjson instead of its json.dumps.
        body: dict[str, Any] = {_BYTES_ARG: orjson.dumps(kw)}
        resp = await self._client.post(
            "/chat/completions",
            cast_to=httpx.Response,
            options=options,  # type: ignore[arg-type]
            **body,
        )
        data = orjson.loads(resp.content)
        if not isinstance(data, dict):
            raise ValueError("the body is not a JSON object")
        return data

    async def complete(self, request: Request) -> Completion:
        started = time.perf_counter()
        mode = self._structured
        try:
            resp = await self._post(self._kwargs(request, mode))
        except openai.APIStatusError as exc:
            # llama.cpp's server answers a json_schema response_format with 500 (its request validation
            # error), others with 400/422: the message, not the status, says the schema mode was refused.
            if request.json_schema is None or mode is not None or not _rejects_schema(exc):
                raise _translate(exc, self.name) from None
            # The server rejected json_schema: remember, and speak json_object + schema from now on.
            self._structured = "json_object"
            try:
                resp = await self._post(self._kwargs(request, "json_object"))
            except (openai.OpenAIError, ValueError) as inner:
                raise _translate(inner, self.name) from None
        except (openai.OpenAIError, ValueError) as exc:  # ValueError: a body that is not JSON
            raise _translate(exc, self.name) from None
        if request.json_schema is not None and self._structured is None:
            self._structured = "json_schema"
        try:
            return _completion(resp, started, self.name)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
            raise ProviderError(
                f"provider {self.name!r} sent a response this client cannot read ({type(exc).__name__}: "
                f"{exc}): check that its base_url is an OpenAI-compatible /v1 endpoint",
                status=None,
                retryable=True,
            ) from None

    async def stream(self, request: Request) -> AsyncIterator[StreamChunk]:
        kw = self._kwargs(request, self._structured)
        kw["stream"] = True
        kw["stream_options"] = {"include_usage": True}
        usage: Usage | None = None
        served: str | None = None
        finish: str | None = None
        try:
            stream = await self._client.chat.completions.create(**kw)
            async for chunk in stream:
                served = chunk.model or served
                if chunk.usage is not None:
                    usage = _usage(chunk.usage, "")
                for choice in chunk.choices or []:
                    delta = choice.delta.content or ""
                    finish = choice.finish_reason or finish
                    if delta:
                        yield StreamChunk(delta=delta)
        except (openai.OpenAIError, ValueError) as exc:
            raise _translate(exc, self.name) from None
        # A server that ignores include_usage sends none: the runtime estimates it and marks the record.
        yield StreamChunk(usage=usage, served_model=served, finish_reason=finish)

    async def embed(self, model: ModelSpec, texts: list[str]) -> Embeddings:
        started = time.perf_counter()
        try:
            resp = await self._client.embeddings.create(model=model.name, input=texts)
        except (openai.OpenAIError, ValueError) as exc:
            raise _translate(exc, self.name) from None
        vectors = [list(d.embedding) for d in sorted(resp.data, key=lambda d: d.index)]
        tokens = resp.usage.prompt_tokens if resp.usage else sum(count_text(t) for t in texts)
        return Embeddings(
            vectors=vectors,
            usage=Usage(input_tokens=tokens),
            served_model=resp.model,
            latency_s=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _completion(resp: dict[str, Any], started: float, provider: str) -> Completion:
    """A Completion from a chat.completion body (the API's JSON)."""
    choices = resp.get("choices")
    if not choices:
        raise ProviderError(
            f"provider {provider!r} returned a response without choices", status=None, retryable=True
        )
    choice = choices[0]
    msg = choice.get("message") or {}
    calls = tuple(
        ToolCall(
            id=c.get("id") or "", name=c["function"]["name"], arguments=c["function"].get("arguments") or "{}"
        )
        for c in (msg.get("tool_calls") or [])
        if isinstance(c.get("function"), dict)
    )
    text = msg.get("content") or ""
    return Completion(
        text=text,
        usage=_usage_json(resp.get("usage"), text),
        served_model=resp.get("model"),
        latency_s=time.perf_counter() - started,
        tool_calls=calls,
        finish_reason=choice.get("finish_reason"),
    )


def _usage_json(u: dict[str, Any] | None, text: str) -> Usage:
    if not u:
        return Usage(output_tokens=count_text(text))
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(
        input_tokens=u.get("prompt_tokens") or 0,
        cached_input_tokens=cached,
        output_tokens=u.get("completion_tokens") or 0,
        reasoning_tokens=reasoning,
    )


def _usage(u: Any, text: str) -> Usage:
    if u is None:
        return Usage(output_tokens=count_text(text))
    cached = getattr(getattr(u, "prompt_tokens_details", None), "cached_tokens", None) or 0
    reasoning = getattr(getattr(u, "completion_tokens_details", None), "reasoning_tokens", None) or 0
    return Usage(
        input_tokens=u.prompt_tokens or 0,
        cached_input_tokens=cached,
        output_tokens=u.completion_tokens or 0,
        reasoning_tokens=reasoning,
    )


def _rejects_schema(exc: openai.APIStatusError) -> bool:
    text = str(exc).lower()
    return exc.status_code in (400, 422, 500) and "response_format" in text and "json_schema" in text


def _translate(exc: Exception, provider: str) -> ProviderError:
    """Map SDK exceptions to ProviderError, marking what is worth retrying."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f"provider {provider!r} timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"provider {provider!r} unreachable: {exc}", retryable=True)
    if isinstance(exc, openai.AuthenticationError):
        return ProviderError(
            f"provider {provider!r} rejected the API key (401): check the key in its api_key_env variable",
            status=401,
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in (408, 409, 429) or status >= 500
        message = _error_message(exc)
        return ProviderError(
            f"provider {provider!r} answered HTTP {status}: {message}",
            status=status,
            retryable=retryable,
            retry_after_s=retry_after_s(exc.response.headers),
        )
    if isinstance(exc, (ValueError, openai.APIResponseValidationError)):
        return ProviderError(f"provider {provider!r} sent a malformed body: {exc}", retryable=True)
    return ProviderError(f"provider {provider!r} failed: {exc}", retryable=True)


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(exc)[:300]
