"""The chaos server's HTTP face: an OpenAI-compatible starlette app plus `/_chaos/*` control endpoints.

The hot path is deliberately thin (read body, `json.loads`, match, sleep, `json.dumps`): the server is used
to benchmark clients, so its own cost must stay far below theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierwise.testing.instances import minimal_instance
from tierwise.testing.script import Fault, Reply, Script
from tierwise.testing.state import ChaosState
from tierwise.testing.wire import (
    embedding_vector,
    encode_embedding,
    estimate_tokens,
    forced_tool,
    paced_sse,
    schema_of,
    stream_events,
    text_of,
    usage_payload,
)

__all__ = ["build_app"]

_DROP = "tierwise.chaos.drop"  # private ASGI message: "close the socket, send nothing"
_JSON = "application/json"
_TRANSPORT_FAULTS = frozenset({"rate_limit", "http_500", "http_502", "http_503", "drop", "hang"})
_HTTP_FAULTS: dict[str, tuple[int, str, str, str | None]] = {
    "rate_limit": (429, "Rate limit reached (chaos-server fault).", "requests", "rate_limit_exceeded"),
    "http_500": (500, "The server had an error while processing your request.", "server_error", None),
    "http_502": (502, "Bad gateway.", "server_error", None),
    "http_503": (503, "The engine is currently overloaded, please try again later.", "server_error", None),
}


def build_app(state: ChaosState) -> ASGIApp:
    """The ASGI app serving `state`; wrap-free apart from the connection-drop shim."""
    h = _Handlers(state)
    routes = [
        Route("/v1/chat/completions", h.chat, methods=["POST"]),
        Route("/v1/embeddings", h.embeddings, methods=["POST"]),
        Route("/v1/models", h.models, methods=["GET"]),
        Route("/_chaos/script", h.set_script, methods=["POST"]),
        Route("/_chaos/script", h.get_script, methods=["GET"]),
        Route("/_chaos/reset", h.reset, methods=["POST"]),
        Route("/_chaos/requests", h.requests, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
    return _DropShim(app)


class _DropShim:
    """Lets a handler close the TCP connection without any response, which ASGI has no message for.

    Uvicorn's `send` is a bound method of its request cycle, which holds the transport; when that is not
    available (another server), an exception is the closest thing: the server then aborts or sends 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded_send(message: Message) -> None:
            if message["type"] != _DROP:
                await send(message)
                return
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is None:
                raise ConnectionAbortedError("chaos-server: connection drop")
            transport.close()
            # Let connection_lost run, so uvicorn sees a disconnected client and logs nothing.
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        await self.app(scope, receive, guarded_send)


class _DropResponse(Response):
    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": _DROP})


def _json(payload: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, headers=headers, media_type=_JSON)


def _error(
    status: int, message: str, type_: str, code: str | None, headers: Mapping[str, str] | None = None
) -> Response:
    # OpenAI's shape, so the SDK maps status to RateLimitError, InternalServerError, ...
    payload = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return _json(payload, status, headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return _error(exc.status_code, message, "invalid_request_error", None)


class _Handlers:
    def __init__(self, state: ChaosState) -> None:
        self.state = state

    def _denied(self, request: Request) -> Response | None:
        key = self.state.require_key
        if key is None or request.headers.get("authorization") == f"Bearer {key}":
            return None
        return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return _error(400, f"request body is not JSON: {exc}", "invalid_request_error", None)
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object", "invalid_request_error", None)
        return body

    async def _transport_fault(self, fault: Fault, request: Request) -> Response:
        """The response for a fault in `_TRANSPORT_FAULTS`: an error status, a drop, or a hang."""
        if fault.kind in _HTTP_FAULTS:
            status, message, type_, code = _HTTP_FAULTS[fault.kind]
            if fault.kind != "rate_limit":
                return _error(status, message, type_, code)
            seconds = fault.retry_after_s
            shown = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
            text = f"{message} Please try again in {shown}s."
            return _error(status, text, type_, code, {"retry-after": shown})
        if fault.kind == "hang":
            # Hold until the client gives up (its timeout) or hang_s passes, then drop: a stuck upstream.
            # Returning on disconnect keeps shutdown fast and frees the task.
            async def until_disconnect() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until_disconnect(), fault.hang_s)
        return _DropResponse()

    async def chat(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        state = self.state
        model = str(body.get("model", ""))
        entry = state.record(request.scope["path"], model, body, request.scope["headers"])

        user = system = ""
        chars = 0
        for msg in body.get("messages") or ():
            if not isinstance(msg, dict):
                return _error(
                    400, f"each message must be an object, got {msg!r}", "invalid_request_error", None
                )
            text = text_of(msg.get("content"))
            chars += len(text)
            role = msg.get("role")
            if role == "user":
                user = text
            elif role in ("system", "developer"):
                system = f"{system}\n{text}" if system else text

        fault = state.scheduled_fault("chat", model)
        rule = None
        if fault is None:
            has_rf = body.get("response_format") is not None
            hit = state.pick_rule(model, user, system, has_rf, bool(body.get("tools")))
            if hit is not None:
                entry["rule"], rule = hit
                fault = rule.fault
        entry["fault"] = fault.kind if fault else None
        latency = rule.latency_s if rule is not None and rule.latency_s is not None else state.latency_s

        if fault is not None and fault.kind in _TRANSPORT_FAULTS:
            if latency:
                await asyncio.sleep(latency)
            return await self._transport_fault(fault, request)

        reply = rule.reply if rule is not None else None
        try:
            content, tool_calls = self._content(body, reply, fault, user)
        except ValueError as exc:  # a schema the default reply cannot instantiate, e.g. a remote $ref
            return _error(400, str(exc), "invalid_request_error", None)
        out_chars = len(content or "") + sum(len(c["function"]["arguments"]) for c in tool_calls)
        usage = usage_payload(estimate_tokens(chars), estimate_tokens(out_chars), reply)
        finish = (reply.finish_reason if reply else None) or ("tool_calls" if tool_calls else "stop")
        served = (reply.served_model if reply else None) or state.script.served_model or model
        cid = f"chatcmpl-chaos-{state.next_id()}"
        created = int(time.time())
        per_token = state.per_token_latency_s
        kind = fault.kind if fault else None

        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": served}
            events = stream_events(head, content, tool_calls, finish, usage if include_usage else None)
            return StreamingResponse(
                paced_sse(events, kind, latency, per_token), media_type="text/event-stream"
            )

        delay = latency + per_token * usage["completion_tokens"]
        if delay:
            await asyncio.sleep(delay)
        if kind == "malformed_json":
            return Response(b'{"id": "' + cid.encode() + b'", "choices": [{"mess', media_type=_JSON)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        payload: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": served,
            "system_fingerprint": "fp_chaos",
        }
        if kind != "missing_choices":
            payload["choices"] = [
                {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
                for i in range(max(1, int(body.get("n") or 1)))
            ]
        payload["usage"] = usage
        return _json(payload)

    def _content(
        self, body: Mapping[str, Any], reply: Reply | None, fault: Fault | None, user: str
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """Assistant content and tool calls: scripted, corrupted by a fault, or the deterministic default."""
        schema = schema_of(body.get("response_format"))
        if fault is not None and fault.kind == "invalid_output":
            return '{"chaos": "truncated output', []
        if fault is not None and fault.kind == "schema_mismatch":
            needs_keys = bool(schema and schema.get("required"))
            return ('{"_chaos": "schema mismatch"}' if needs_keys else '["schema mismatch"]'), []
        if reply is not None and reply.has_content:
            calls = [
                {
                    "id": c.id or f"call_chaos_{i}",
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments),
                    },
                }
                for i, c in enumerate(reply.tool_calls)
            ]
            if reply.data is not None:
                return json.dumps(reply.data), calls
            return reply.text, calls
        if schema is not None:
            return json.dumps(minimal_instance(schema)), []
        if (
            isinstance(body.get("response_format"), dict)
            and body["response_format"].get("type") == "json_object"
        ):
            return "{}", []
        tool = forced_tool(body)
        if tool is not None:
            args = json.dumps(minimal_instance(tool.get("parameters") or {}) or {})
            call = {
                "id": "call_chaos_0",
                "type": "function",
                "function": {"name": tool.get("name", ""), "arguments": args},
            }
            return None, [call]
        return f"echo: {user[:64]}", []

    async def embeddings(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        state = self.state
        model = str(body.get("model", ""))
        entry = state.record(request.scope["path"], model, body, request.scope["headers"])
        raw = body.get("input")
        items = raw if isinstance(raw, list) and not (raw and isinstance(raw[0], int)) else [raw]
        texts = [x if isinstance(x, str) else json.dumps(x) for x in items]

        fault = state.scheduled_fault("embeddings", model)
        entry["fault"] = fault.kind if fault else None
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        if fault is not None and fault.kind in _TRANSPORT_FAULTS:
            return await self._transport_fault(fault, request)
        if fault is not None and fault.kind == "malformed_json":
            return Response(b'{"object": "list", "data": [{"embedd', media_type=_JSON)

        dim = int(body.get("dimensions") or state.embedding_dim)
        as_b64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": encode_embedding(embedding_vector(t, dim), as_b64),
            }
            for i, t in enumerate(texts)
        ]
        prompt = sum(estimate_tokens(len(t)) for t in texts)
        payload: dict[str, Any] = {"object": "list", "model": model}
        if fault is None or fault.kind != "missing_choices":
            payload["data"] = data
        payload["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
        return _json(payload)

    async def models(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        script = self.state.script
        ids = dict.fromkeys([*script.models, *(r.match.model for r in script.rules if r.match.model)])
        names = list(ids) or ["chaos-large", "chaos-mini", "chaos-nano"]
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "tierwise-chaos"} for m in names]
        return _json({"object": "list", "data": data})

    async def set_script(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            script = Script.model_validate(body)
        except ValidationError as exc:
            return _error(400, f"invalid chaos script: {exc}", "invalid_request_error", "invalid_script")
        self.state.load(script)
        return _json({"ok": True, "rules": len(script.rules), "faults": len(script.faults)})

    async def get_script(self, request: Request) -> Response:
        return _json(self.state.script.model_dump(mode="json", exclude_none=True))

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return _json({"ok": True})

    async def requests(self, request: Request) -> Response:
        return _json({"object": "list", "data": self.state.log_view()})
