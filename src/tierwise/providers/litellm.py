"""Any provider LiteLLM reaches (Bedrock, Vertex, Gemini, Mistral, Ollama ...) via ``litellm.acompletion``.

LiteLLM's own retries are off (the runtime owns the one retry loop), and it is kept from phoning home: its
cost map, Anthropic beta headers and blog posts come from the files it ships, no ``.env`` is loaded behind
the user's back, no callbacks are registered. Its import takes seconds, so it happens when a ``litellm``
provider is first used, never with tierwise.

The model string LiteLLM gets is the spec's ``name`` when that has a prefix (``[providers.ll]`` with
model ``ll/bedrock/anthropic.claude-...`` sends ``bedrock/anthropic.claude-...``), else the model id
(``[providers.bedrock]`` with ``bedrock/anthropic.claude-...`` sends the same). LiteLLM's reported cost
goes into the call's metadata as ``litellm_cost_usd``; budgets use ours, from the catalog.
"""

from __future__ import annotations

import functools
import os
import time
import types
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from tierwise.core import ToolCall, Usage
from tierwise.errors import ProviderError, ProviderSetupError
from tierwise.models.spec import ModelSpec
from tierwise.models.tokens import count_text
from tierwise.providers.base import Completion, Embeddings, Request, StreamChunk, retry_after_s

# Before the import: LiteLLM reads these while loading (the cost map) or at first use.
_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
}
# Providers whose credentials come from a chain, not one variable: checked with their own SDK.
_AWS = frozenset({"bedrock", "bedrock_converse", "sagemaker", "sagemaker_chat"})
# Ambient credentials (Google ADC) that LiteLLM's environment check cannot see.
_AMBIENT = frozenset({"vertex_ai", "vertex_ai_beta"})
COST_KEY = "litellm_cost_usd"


@functools.cache
def load_litellm() -> types.ModuleType:
    """Import LiteLLM once, offline and quiet; a missing package is one line naming the extra."""
    os.environ.update(_OFFLINE_ENV)
    os.environ.setdefault("LITELLM_MODE", "PRODUCTION")  # DEV mode loads ./.env into os.environ
    try:
        import litellm
    except ImportError:
        raise ProviderSetupError(
            "a [providers.X] with kind = 'litellm' needs LiteLLM: pip install 'tierwise[litellm]'"
        ) from None
    if not isinstance(getattr(litellm, "telemetry", None), types.ModuleType):
        litellm.telemetry = False  # older releases' usage ping; newer ones have none outside the proxy
    litellm.suppress_debug_info = True  # its "Give Feedback / Get Help" banner on stdout, per error
    return litellm


class LiteLLMProvider:
    """Adapter over ``litellm.acompletion`` / ``aembedding``."""

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        timeout_s: float = 60.0,
        structured_output: str = "auto",
    ) -> None:
        self.name = name
        self._api_key = api_key
        self._api_base = api_base
        self._timeout_s = timeout_s
        self._json_object = structured_output == "json_object"
        self._checked: set[str] = set()
        self._litellm = load_litellm()

    # --- model strings and their credentials ---------------------------------------------------------

    def model_string(self, spec: ModelSpec) -> str:
        """What LiteLLM is asked for, checked on first use: a known prefix, credentials present."""
        model = spec.name if "/" in spec.name else spec.id
        if model not in self._checked:
            self._check(model)
            self._checked.add(model)
        return model

    def _common(self, spec: ModelSpec, timeout_s: float | None) -> dict[str, Any]:
        """What every LiteLLM call carries: the model string, timeout, credentials, and no retries of its
        own — ours apply (backoff, retry budget, fallback, breakers); LiteLLM's and the SDK's are off."""
        kw: dict[str, Any] = {
            "model": self.model_string(spec),
            "timeout": timeout_s if timeout_s is not None else self._timeout_s,
            "num_retries": 0,
            "max_retries": 0,
        }
        if self._api_key is not None:
            kw["api_key"] = self._api_key
        if self._api_base is not None:
            kw["api_base"] = self._api_base
        return kw

    def _check(self, model: str) -> None:
        try:
            llm_provider = self._litellm.get_llm_provider(model, api_base=self._api_base)[1]
        except Exception:
            raise ProviderSetupError(
                f"provider {self.name!r}: LiteLLM does not know the provider of {model!r}: start the model "
                "name with one of LiteLLM's prefixes (bedrock/, vertex_ai/, gemini/, mistral/, ollama/, "
                "openai/ ...; https://docs.litellm.ai/docs/providers)"
            ) from None
        if self._api_key is not None or llm_provider in _AMBIENT:
            return
        if llm_provider in _AWS:
            if not _aws_credentials():
                raise ProviderSetupError(
                    f"provider {self.name!r}: {model!r} needs AWS credentials and none are set: set "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_REGION_NAME), or AWS_PROFILE"
                )
            return
        found = self._litellm.validate_environment(model, api_base=self._api_base)
        # An unset *_API_BASE has a default (Ollama's localhost); a missing key has none.
        missing = [k for k in found.get("missing_keys", []) if not k.endswith(("_API_BASE", "_BASE_URL"))]
        if not found.get("keys_in_environment", True) and missing:
            raise ProviderSetupError(
                f"provider {self.name!r}: {model!r} needs {' or '.join(missing)} in the environment: set it, "
                f"or name the variable holding the key with api_key_env under [providers.{self.name}]"
            )

    # --- requests -----------------------------------------------------------------------------------

    def _kwargs(self, request: Request) -> dict[str, Any]:
        kw = self._common(request.model, request.timeout_s)
        kw["messages"] = [m.to_openai() for m in request.messages]
        kw["max_tokens"] = request.max_output_tokens
        if request.temperature is not None:
            kw["temperature"] = request.temperature
        if request.tools:
            kw["tools"] = [t.to_openai() for t in request.tools]
        if request.json_schema is not None:
            if self._json_object:  # llama.cpp's server: json_object plus the schema
                kw["response_format"] = {"type": "json_object", "schema": request.json_schema}
            else:
                kw["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": request.schema_name, "schema": request.json_schema},
                }
        return kw

    async def complete(self, request: Request) -> Completion:
        kw = self._kwargs(request)
        started = time.perf_counter()
        try:
            resp = await self._litellm.acompletion(**kw)
        except Exception as exc:
            raise _translate(exc, self.name) from None
        choices = getattr(resp, "choices", None)
        if not choices:
            raise ProviderError(f"provider {self.name!r} returned a response without choices", retryable=True)
        choice = choices[0]
        msg = choice.message
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
            for c in (getattr(msg, "tool_calls", None) or [])
            if getattr(c, "function", None) is not None
        )
        text = msg.content or ""
        return Completion(
            text=text,
            usage=_usage(getattr(resp, "usage", None), text),
            served_model=getattr(resp, "model", None),
            latency_s=time.perf_counter() - started,
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            extra=_cost_extra(self._reported_cost(resp)),
        )

    def _reported_cost(self, resp: Any) -> float | None:
        hidden = getattr(resp, "_hidden_params", None) or {}
        cost = hidden.get("response_cost")
        if cost is None:
            try:
                cost = self._litellm.completion_cost(completion_response=resp)
            except Exception:  # a model LiteLLM has no price for: nothing to record beside ours
                return None
        return cost

    async def stream(self, request: Request) -> AsyncIterator[StreamChunk]:
        kw = self._kwargs(request)
        kw["stream"] = True
        kw["stream_options"] = {"include_usage": True}
        usage: Usage | None = None
        served: str | None = None
        finish: str | None = None
        cost: float | None = None
        try:
            stream = await self._litellm.acompletion(**kw)
            async for chunk in stream:
                served = getattr(chunk, "model", None) or served
                u = getattr(chunk, "usage", None)
                if u is not None:
                    usage = _usage(u, "")
                    cost = getattr(u, "cost", None)  # LiteLLM's cost rides on the final usage block
                for choice in getattr(chunk, "choices", None) or []:
                    delta = getattr(choice.delta, "content", None) or ""
                    finish = choice.finish_reason or finish
                    if delta:
                        yield StreamChunk(delta=delta)
        except ProviderError:
            raise
        except Exception as exc:
            raise _translate(exc, self.name) from None
        # No usage block: the runtime estimates it and marks the record.
        yield StreamChunk(usage=usage, served_model=served, finish_reason=finish, extra=_cost_extra(cost))

    async def embed(self, model: ModelSpec, texts: list[str]) -> Embeddings:
        kw = self._common(model, None)
        kw["input"] = texts
        started = time.perf_counter()
        try:
            resp = await self._litellm.aembedding(**kw)
        except Exception as exc:
            raise _translate(exc, self.name) from None
        data = sorted(resp.data, key=lambda d: _field(d, "index") or 0)
        vectors = [list(_field(d, "embedding")) for d in data]
        u = getattr(resp, "usage", None)
        tokens = getattr(u, "prompt_tokens", None) or sum(count_text(t) for t in texts)
        return Embeddings(
            vectors=vectors,
            usage=Usage(input_tokens=tokens),
            served_model=getattr(resp, "model", None),
            latency_s=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        """Nothing to close: LiteLLM keeps its HTTP clients in a process-wide cache."""


def _field(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)


def _cost_extra(cost: Any) -> dict[str, float]:
    return {COST_KEY: float(cost)} if isinstance(cost, (int, float)) and cost >= 0 else {}


def _usage(u: Any, text: str) -> Usage:
    if u is None:
        return Usage(output_tokens=count_text(text))
    cached = getattr(getattr(u, "prompt_tokens_details", None), "cached_tokens", None) or 0
    reasoning = getattr(getattr(u, "completion_tokens_details", None), "reasoning_tokens", None) or 0
    return Usage(
        input_tokens=getattr(u, "prompt_tokens", 0) or 0,
        cached_input_tokens=cached,
        output_tokens=getattr(u, "completion_tokens", 0) or 0,
        reasoning_tokens=reasoning,
    )


def _aws_credentials() -> bool:
    """Whether botocore finds credentials along its chain (env, profile, files, container, SSO)."""
    try:
        import botocore.session
    except ImportError:
        return (
            any(os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE"))
            or (Path.home() / ".aws" / "credentials").is_file()
        )
    try:
        return botocore.session.get_session().get_credentials() is not None
    except Exception:  # a broken profile: let the call report what is wrong with it
        return True


def _translate(exc: Exception, provider: str) -> ProviderError:
    """LiteLLM's exceptions (OpenAI's, with ``status_code``) to ProviderError, marking what to retry."""
    import openai  # LiteLLM's exceptions subclass the OpenAI SDK's

    message = str(getattr(exc, "message", None) or exc).replace("\n", " ")[:300]
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f"provider {provider!r} timed out", status=408, retryable=True)
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    if status == 401:
        return ProviderError(
            f"provider {provider!r} rejected the credentials (401): check the key in the environment "
            f"or api_key_env under [providers.{provider}]: {message}",
            status=401,
        )
    if isinstance(exc, openai.APIConnectionError) and status is None:
        return ProviderError(f"provider {provider!r} unreachable: {message}", retryable=True)
    if status is None:
        return ProviderError(f"provider {provider!r} failed: {message}", retryable=True)
    return ProviderError(
        f"provider {provider!r} answered HTTP {status}: {message}",
        status=status,
        retryable=status in (408, 409, 429) or status >= 500,
        retry_after_s=retry_after_s(getattr(getattr(exc, "response", None), "headers", None)),
    )
