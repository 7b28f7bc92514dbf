"""The proxy's shared state and the one way a route runs: admit → parse → the one path → answer.

Every route is wrapped by ``answering``: our errors become OpenAI-style bodies with their status, and
anything unexpected a 500 that is logged (redacted) and never shows a traceback to the client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from tierwise.core import Task
from tierwise.errors import TierwiseError
from tierwise.runtime.result import Result
from tierwise.runtime.runtime import Stream
from tierwise.runtime.scope import Scope
from tierwise.server.errors import ApiError, from_tierwise
from tierwise.server.gate import Caller, Gate
from tierwise.server.jsonio import JSONBody
from tierwise.server.sse import sse

if TYPE_CHECKING:
    from tierwise.models.catalog import Catalog
    from tierwise.session import Session

log = logging.getLogger("tierwise.server")

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(eq=False)
class Proxy:
    session: Session
    gate: Gate
    max_body_bytes: int

    @property
    def catalog(self) -> Catalog:
        return self.session.config.catalog

    async def admit(self, request: Request) -> Caller:
        return await self.gate.admit(request.headers.get("authorization"))

    async def call(self, caller: Caller, task: Task) -> Result:
        async with self.gate.scope(caller) as scope:
            return await scope.call(task)

    async def stream(self, caller: Caller, task: Task) -> Held:
        """A stream opened up to its first token, inside the caller's scope (held until the body ends)."""
        cm = self.gate.scope(caller)
        scope = await cm.__aenter__()
        try:
            stream = scope.stream(task)
            assert isinstance(stream, Stream)
            await stream.start()
        except BaseException as exc:
            # The gate sees the error (it may turn it into its own, e.g. a key's 429).
            await cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return Held(stream, scope, cm)


@dataclass(eq=False)
class Held:
    stream: Stream
    scope: Scope
    _cm: AbstractAsyncContextManager[Scope]

    async def events(
        self, render: Callable[[Stream], AsyncGenerator[bytes, None]]
    ) -> AsyncGenerator[bytes, None]:
        """``render``'s events; an error after the headers went out is sent as an error event."""
        try:
            async for event in render(self.stream):
                yield event
        except TierwiseError as exc:
            yield sse(from_tierwise(exc).body(), "error")
        except ApiError as exc:
            yield sse(exc.body(), "error")
        finally:
            await self._cm.__aexit__(None, None, None)


def error_response(exc: BaseException) -> Response:
    if isinstance(exc, TierwiseError):
        exc = from_tierwise(exc)
    if not isinstance(exc, ApiError):
        log.error("unexpected error answering a request", exc_info=exc)
        exc = ApiError(
            500,
            "internal error in the tierwise proxy: see the server log",
            type="api_error",
            code="internal_error",
        )
    return JSONBody(exc.body(), status_code=exc.status, headers=exc.headers())


def answering(fn: Endpoint) -> Endpoint:
    @wraps(fn)
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except Exception as exc:
            return error_response(exc)

    return endpoint
