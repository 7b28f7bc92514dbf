"""``POST /v1/chat/completions``: request → Task, Result → ``chat.completion``, or a stream of chunks."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tierwise.core import Message, Task, ToolCall
from tierwise.runtime.result import Result
from tierwise.runtime.runtime import Stream
from tierwise.server.body import parse, read_json
from tierwise.server.convert import output_schema, tool_spec, with_choice
from tierwise.server.errors import ApiError
from tierwise.server.jsonio import JSONBody, dumps
from tierwise.server.proxy import Proxy, answering
from tierwise.server.schemas import ChatMessage, ChatRequest
from tierwise.server.sse import DONE, EventStream, sse
from tierwise.server.target import (
    chat_usage,
    describe,
    info,
    result_headers,
    stream_headers,
    target,
)


def chat_task(body: ChatRequest, headers: Mapping[str, str], proxy: Proxy) -> Task:
    if body.n is not None and body.n > 1:
        raise ApiError(400, "n > 1 is not supported: send one request per answer", param="n")
    tools = tuple(
        tool_spec(t.function.name, t.function.description, t.function.parameters) for t in body.tools or ()
    )
    return Task(
        input=tuple(_message(m, i) for i, m in enumerate(body.messages)),
        tools=with_choice(tools, body.tool_choice),
        json_schema=output_schema(body.response_format, param="response_format", nested=True),
        max_output_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        **target(body.model, proxy.catalog),
        **describe(body.metadata, headers),
    )


def _message(m: ChatMessage, i: int) -> Message:
    text, images = _content(m, i)
    role = "system" if m.role == "developer" else m.role
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ())
    if m.role == "tool" and not m.tool_call_id:
        raise ApiError(
            400,
            f"messages.{i}.tool_call_id is missing: a tool message answers a tool call by its id",
            param=f"messages.{i}.tool_call_id",
        )
    return Message(role, text, tool_calls=calls, tool_call_id=m.tool_call_id, images=images)


def _content(m: ChatMessage, i: int) -> tuple[str, tuple[str, ...]]:
    if m.content is None or isinstance(m.content, str):
        return m.content or "", ()
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(m.content):
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif part.type == "image_url" and part.image_url is not None:
            url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
            images.append(url)
        else:
            raise ApiError(
                400,
                f"messages.{i}.content.{j}: a content part of type {part.type[:40]!r} is not supported "
                "(or lacks its field): use text or image_url parts",
                param=f"messages.{i}.content.{j}",
            )
    return "\n".join(texts), tuple(images)


def _finish(result: Result, task: Task) -> str:
    if result.tool_calls:
        return "tool_calls"
    # The runtime does not pass the provider's finish reason on; an answer that used every token allowed
    # was cut there.
    limit = task.max_output_tokens
    return "length" if limit is not None and result.usage.output_tokens >= limit else "stop"


def _tool_calls(result: Result) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in result.tool_calls
    ]


def _content_text(result: Result, task: Task) -> str:
    if task.json_schema is not None and not isinstance(result.output, str):
        return dumps(result.output).decode()  # the validated (maybe repaired) value, not the raw text
    return result.text


def completion_body(result: Result, task: Task) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": _content_text(result, task), "refusal": None}
    if result.tool_calls:
        message["tool_calls"] = _tool_calls(result)
        message["content"] = message["content"] or None
    return {
        "id": "chatcmpl-" + os.urandom(12).hex(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _finish(result, task), "logprobs": None}
        ],
        "usage": chat_usage(result.usage),
        "system_fingerprint": None,
        "tierwise": info(result),
    }


def chunks(task: Task) -> Any:
    """A renderer of the stream's chunks: a role chunk, text deltas, tool calls, the finish reason, and a
    usage chunk (empty ``choices``) always, as OpenAI sends with ``include_usage``; then ``[DONE]``."""

    async def render(stream: Stream) -> AsyncGenerator[bytes, None]:
        head = {
            "id": "chatcmpl-" + os.urandom(12).hex(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": stream.model,
            "system_fingerprint": None,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return sse({**head, "choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        async for delta in stream:
            yield chunk({"content": delta})
        result = stream.result
        assert result is not None
        if result.tool_calls:
            calls = [{"index": k, **c} for k, c in enumerate(_tool_calls(result))]
            yield chunk({"tool_calls": calls})
        yield chunk({}, _finish(result, task))
        yield sse({**head, "choices": [], "usage": chat_usage(result.usage), "tierwise": info(result)})
        yield DONE

    return render


def routes(proxy: Proxy) -> list[Route]:
    @answering
    async def completions(request: Request) -> Response:
        caller = await proxy.admit(request)
        body = parse(ChatRequest, await read_json(request, proxy.max_body_bytes))
        task = chat_task(body, request.headers, proxy)
        if body.stream:
            held = await proxy.stream(caller, task)
            stream = held.stream
            return EventStream(held.events(chunks(task)), headers=stream_headers(stream))
        result = await proxy.call(caller, task)
        return JSONBody(completion_body(result, task), headers=result_headers(result))

    return [Route("/v1/chat/completions", completions, methods=["POST"])]
