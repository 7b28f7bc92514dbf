"""``POST /v1/responses``: the Responses API (the openai SDK's ``responses.create``, the Agents SDK).

Stateless: ``previous_response_id`` and ``store`` are refused; the client sends the whole conversation
as ``input`` items (messages, ``function_call`` and ``function_call_output``), as the Agents SDK does.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tierwise.core import Message, Task, ToolCall, ToolSpec
from tierwise.runtime.result import Result
from tierwise.runtime.runtime import Stream
from tierwise.server.body import parse, read_json, validation_error
from tierwise.server.convert import output_schema, tool_spec, with_choice
from tierwise.server.errors import ApiError
from tierwise.server.jsonio import JSONBody, dumps
from tierwise.server.proxy import Proxy, answering
from tierwise.server.schemas import ResponsesFunctionTool, ResponsesRequest
from tierwise.server.sse import EventStream, sse
from tierwise.server.target import describe, info, result_headers, stream_headers, target

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


def responses_task(body: ResponsesRequest, headers: Mapping[str, str], proxy: Proxy) -> Task:
    if body.previous_response_id is not None:
        raise ApiError(
            400,
            "previous_response_id is not supported: tierwise is stateless, send the whole "
            "conversation in input",
            param="previous_response_id",
        )
    if body.store:
        raise ApiError(
            400, "store=true is not supported: tierwise keeps no responses, send store=false", param="store"
        )
    messages = [Message("system", body.instructions)] if body.instructions else []
    messages += _messages(body.input)
    fmt = body.text.format if body.text is not None else None
    return Task(
        input=tuple(messages),
        tools=with_choice(_tools(body.tools or []), body.tool_choice),
        json_schema=output_schema(fmt, param="text.format", nested=False),
        max_output_tokens=body.max_output_tokens,
        temperature=body.temperature,
        **target(body.model, proxy.catalog),
        **describe(body.metadata, headers),
    )


def _tools(tools: list[dict[str, Any]]) -> tuple[ToolSpec, ...]:
    out = []
    for i, raw in enumerate(tools):
        if raw.get("type") != "function":
            raise ApiError(
                400,
                f"tools.{i}: tool type {str(raw.get('type'))[:40]!r} is not supported: only "
                "function tools are",
                param=f"tools.{i}.type",
            )
        try:
            t = ResponsesFunctionTool.model_validate(raw)
        except ValidationError as exc:
            err = validation_error(exc)
            raise ApiError(400, f"tools.{i}: {err.message}", param=f"tools.{i}") from None
        out.append(tool_spec(t.name, t.description, t.parameters))
    return tuple(out)


def _messages(items: str | list[dict[str, Any]]) -> list[Message]:
    if isinstance(items, str):
        return [Message("user", items)]
    out: list[Message] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, i))
        elif kind == "function_call":
            call = ToolCall(_str(item, "call_id", i), _str(item, "name", i), _str(item, "arguments", i))
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and (last.tool_calls or not last.content):
                # Parallel calls of one turn arrive as separate items: one assistant message holds them.
                out[-1] = Message("assistant", last.content, tool_calls=(*last.tool_calls, call))
            else:
                out.append(Message("assistant", "", tool_calls=(call,)))
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else dumps(output).decode()
            out.append(Message("tool", text, tool_call_id=_str(item, "call_id", i)))
        elif kind == "reasoning":
            continue  # a reasoning model's summary from an earlier turn: nothing to send to ours
        else:
            raise ApiError(
                400,
                f"input.{i}: item type {str(kind)[:40]!r} is not supported: use messages, "
                "function_call and function_call_output",
                param=f"input.{i}.type",
            )
    return out


def _message(item: dict[str, Any], i: int) -> Message:
    role = _ROLES.get(item.get("role", ""))
    if role is None:
        raise ApiError(
            400, f"input.{i}.role must be user, system, developer or assistant", param=f"input.{i}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        return Message(role, content)  # type: ignore[arg-type]
    if not isinstance(content, list):
        raise ApiError(
            400, f"input.{i}.content must be a string or a list of parts", param=f"input.{i}.content"
        )
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS and isinstance(part.get("text", part.get("refusal")), str):
            texts.append(part.get("text", part.get("refusal")))
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            images.append(part["image_url"])
        else:
            raise ApiError(
                400,
                f"input.{i}.content.{j}: a part of type {str(kind)[:40]!r} is not supported: "
                "use input_text or input_image",
                param=f"input.{i}.content.{j}",
            )
    return Message(role, "\n".join(texts), images=tuple(images))  # type: ignore[arg-type]


def _str(item: dict[str, Any], key: str, i: int) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ApiError(400, f"input.{i}.{key} must be a string", param=f"input.{i}.{key}")
    return value


# --- the answer -------------------------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _usage(result: Result) -> dict[str, Any]:
    u = result.usage
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_input_tokens, "cache_write_tokens": 0},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def _text(result: Result, task: Task) -> str:
    if task.json_schema is not None and not isinstance(result.output, str):
        return dumps(result.output).decode()
    return result.text


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": [part]}


def _call_items(result: Result) -> list[dict[str, Any]]:
    return [
        {
            "type": "function_call",
            "id": _new_id("fc_"),
            "call_id": c.id,
            "name": c.name,
            "arguments": c.arguments,
            "status": "completed",
        }
        for c in result.tool_calls
    ]


class Envelope:
    """The response object around the output, the same in the body and in every stream event."""

    def __init__(self, body: ResponsesRequest, task: Task, model: str) -> None:
        self.id = _new_id("resp_")
        self.created = int(time.time())
        self.body, self.task, self.model = body, task, model

    def dump(self, status: str, output: list[dict[str, Any]], result: Result | None = None) -> dict[str, Any]:
        fmt = self.body.text.format if self.body.text is not None and self.body.text.format else None
        incomplete = status == "completed" and result is not None and self._cut(result)
        out: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": "incomplete" if incomplete else status,
            "model": result.model if result is not None else self.model,
            "output": output,
            "instructions": self.body.instructions,
            "parallel_tool_calls": True,
            "tool_choice": self.body.tool_choice or "auto",
            "tools": self.body.tools or [],
            "temperature": self.body.temperature,
            "top_p": None,
            "max_output_tokens": self.body.max_output_tokens,
            "previous_response_id": None,
            "store": False,
            "text": {"format": fmt or {"type": "text"}},
            "truncation": "disabled",
            "metadata": self.body.metadata or {},
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "usage": _usage(result) if result is not None else None,
        }
        if result is not None:
            out["tierwise"] = info(result)
        return out

    def _cut(self, result: Result) -> bool:
        limit = self.task.max_output_tokens
        return not result.tool_calls and limit is not None and result.usage.output_tokens >= limit

    def output(self, result: Result, msg_id: str | None = None) -> list[dict[str, Any]]:
        text = _text(result, self.task)
        items = [_message_item(msg_id or _new_id("msg_"), text)] if text or not result.tool_calls else []
        return items + _call_items(result)


def events(envelope: Envelope) -> Any:
    """A renderer of the event sequence the SDK's stream reader expects, each with its sequence number."""

    async def render(stream: Stream) -> AsyncGenerator[bytes, None]:
        seq = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal seq
            seq += 1
            return sse({"type": kind, "sequence_number": seq - 1, **fields}, kind)

        yield event("response.created", response=envelope.dump("in_progress", []))
        yield event("response.in_progress", response=envelope.dump("in_progress", []))
        msg_id = _new_id("msg_")
        where = {"item_id": msg_id, "output_index": 0, "content_index": 0}
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event(
            "response.output_item.added",
            output_index=0,
            item={**_message_item(msg_id, ""), "status": "in_progress", "content": []},
        )
        yield event("response.content_part.added", **where, part=empty)
        parts: list[str] = []
        async for delta in stream:
            parts.append(delta)
            yield event("response.output_text.delta", **where, delta=delta, logprobs=[])
        result = stream.result
        assert result is not None
        text = _text(result, envelope.task) if envelope.task.json_schema is not None else "".join(parts)
        yield event("response.output_text.done", **where, text=text, logprobs=[])
        yield event("response.content_part.done", **where, part={**empty, "text": text})
        message = _message_item(msg_id, text)
        yield event("response.output_item.done", output_index=0, item=message)
        output = [message]
        for call in _call_items(result):
            n = len(output)
            yield event(
                "response.output_item.added",
                output_index=n,
                item={**call, "arguments": "", "status": "in_progress"},
            )
            yield event(
                "response.function_call_arguments.delta",
                item_id=call["id"],
                output_index=n,
                delta=call["arguments"],
            )
            yield event(
                "response.function_call_arguments.done",
                item_id=call["id"],
                output_index=n,
                name=call["name"],
                arguments=call["arguments"],
            )
            yield event("response.output_item.done", output_index=n, item=call)
            output.append(call)
        done = envelope.dump("completed", output, result)
        kind = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
        yield event(kind, response=done)

    return render


def routes(proxy: Proxy) -> list[Route]:
    @answering
    async def create(request: Request) -> Response:
        caller = await proxy.admit(request)
        body = parse(ResponsesRequest, await read_json(request, proxy.max_body_bytes))
        task = responses_task(body, request.headers, proxy)
        if body.stream:
            held = await proxy.stream(caller, task)
            stream = held.stream
            assert stream.model is not None
            envelope = Envelope(body, task, stream.model)
            return EventStream(held.events(events(envelope)), headers=stream_headers(stream))
        result = await proxy.call(caller, task)
        envelope = Envelope(body, task, result.model)
        payload = envelope.dump("completed", envelope.output(result), result)
        return JSONBody(payload, headers=result_headers(result))

    return [Route("/v1/responses", create, methods=["POST"])]
