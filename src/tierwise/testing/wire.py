"""The OpenAI wire format as the chaos server writes it: message text, token estimates, usage blocks,
stream chunks and embedding vectors. Pure functions, kept apart from the HTTP handlers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import sys
from array import array
from collections.abc import AsyncIterator, Mapping
from typing import Any

from tierwise.testing.script import Reply

__all__ = [
    "embedding_vector",
    "encode_embedding",
    "estimate_tokens",
    "forced_tool",
    "paced_sse",
    "schema_of",
    "stream_events",
    "text_of",
    "usage_payload",
]

_PIECE = re.compile(r"\s*\S{1,16}|\s+")  # stream pieces: roughly a word each, long words split


def text_of(content: object) -> str:
    """Text of a message's content: a string, or a list of parts of which the text parts count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def estimate_tokens(chars: int) -> int:
    return chars // 4 + 1  # the usual ~4 chars per token; close enough for metering tests


def schema_of(response_format: object) -> Mapping[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        return spec.get("schema") or {}
    if kind == "json_object":
        return response_format.get("schema")  # llama.cpp accepts a schema here; OpenAI does not
    return None


def forced_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The tool a request forces (`tool_choice` required or named), so the default reply can call it."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice in (None, "auto", "none"):
        return None
    if choice == "required":
        return tools[0].get("function", {})  # type: ignore[no-any-return]
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for tool in tools:
            if tool.get("function", {}).get("name") == name:
                return tool["function"]  # type: ignore[no-any-return]
    return None


def embedding_vector(text: str, dim: int) -> list[float]:
    """A unit vector determined by the text alone: same text, same vector, across runs and machines."""
    raw = hashlib.shake_256(text.encode()).digest(2 * dim)
    values = [v / 32767.5 - 1.0 for v in memoryview(raw).cast("H")]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def usage_payload(prompt: int, completion: int, reply: Reply | None) -> dict[str, Any]:
    o = reply.usage if reply is not None else None
    if o is not None:
        prompt = prompt if o.prompt_tokens is None else o.prompt_tokens
        completion = completion if o.completion_tokens is None else o.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": (o and o.cached_tokens) or 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": (o and o.reasoning_tokens) or 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def stream_events(
    head: dict[str, Any],
    content: str | None,
    tool_calls: list[dict[str, Any]],
    finish: str,
    usage: dict[str, Any] | None,
) -> list[tuple[dict[str, Any], int]]:
    """The chunk payloads of a streamed completion, each with the token count it carries (for pacing)."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**head, "choices": [choice]}

    events: list[tuple[dict[str, Any], int]] = [(chunk({"role": "assistant", "content": ""}), 0)]
    for piece in _PIECE.findall(content or ""):
        events.append((chunk({"content": piece}), 1))
    for i, call in enumerate(tool_calls):
        fn = call["function"]
        opening = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": fn["name"], "arguments": ""},
        }
        events.append((chunk({"tool_calls": [opening]}), 1))
        for piece in _PIECE.findall(fn["arguments"]):
            events.append((chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}), 1))
    events.append((chunk({}, finish), 0))
    if usage is not None:
        events.append(({**head, "choices": [], "usage": usage}, 0))
    return events


async def paced_sse(
    events: list[tuple[dict[str, Any], int]], fault: str | None, latency: float, per_token: float
) -> AsyncIterator[bytes]:
    if latency:
        await asyncio.sleep(latency)
    if fault == "malformed_json":
        yield b'data: {"id": "chatcmpl-chaos", "choices": [{"delt\n\n'
    else:
        for payload, tokens in events:
            if per_token and tokens:
                await asyncio.sleep(per_token * tokens)
            if fault == "missing_choices":
                payload = {k: v for k, v in payload.items() if k != "choices"}
            yield b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def encode_embedding(vec: list[float], as_base64: bool) -> list[float] | str:
    """The SDK asks for base64 by default: little-endian float32, base64-encoded."""
    if not as_base64:
        return vec
    packed = array("f", vec)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()
