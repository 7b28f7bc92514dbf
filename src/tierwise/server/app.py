"""The proxy as a Starlette app: ``create_app(session, gate)``; ``app_from_env`` for uvicorn's workers.

The app holds one open Session and one Gate for its whole life: no per-request session, run or database
round trip of its own, so what a request adds over the upstream call is routing and the ledger write.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tierwise.runtime.heap import frozen_heap
from tierwise.server import catalog_routes, chat, embeddings, responses
from tierwise.server.body import DEFAULT_MAX_BODY_BYTES
from tierwise.server.dashboard import dashboard_routes
from tierwise.server.errors import ApiError
from tierwise.server.gate import Gate, OpenGate
from tierwise.server.keys import KeyGate
from tierwise.server.proxy import Proxy, error_response
from tierwise.server.warm import warm_up

if TYPE_CHECKING:
    from tierwise.session import Session

__all__ = ["ENV_CONFIG", "ENV_MAX_BODY", "ENV_NO_AUTH", "ENV_WORKERS", "app_from_env", "create_app"]

# What `tierwise serve` hands each worker process (uvicorn starts workers from an import string).
ENV_CONFIG = "TIERWISE_SERVE_CONFIG"
ENV_NO_AUTH = "TIERWISE_SERVE_NO_AUTH"
ENV_MAX_BODY = "TIERWISE_SERVE_MAX_BODY_BYTES"
ENV_WORKERS = "TIERWISE_SERVE_WORKERS"

log = logging.getLogger("tierwise.server")


def create_app(
    session: Session,
    gate: Gate,
    *,
    extra_routes: Iterable[BaseRoute] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    owns_session: bool = False,
    warm: bool = False,
) -> Starlette:
    """The OpenAI-compatible routes over an open ``session``; ``gate`` admits callers and gives their run.

    ``warm``: load the kind classifier, e5, the tokenizer and the provider clients at start-up, before the
    first request (``tierwise serve`` does; seconds of start-up a short-lived test server need not pay).
    At shutdown the gate's runs are finished (and the session closed when ``owns_session``).
    """
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be at least 1")
    proxy = Proxy(session, gate, max_body_bytes)
    routes: list[BaseRoute] = [
        *chat.routes(proxy),
        *responses.routes(proxy),
        *embeddings.routes(proxy),
        *catalog_routes.routes(proxy),
        *extra_routes,
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if warm:
            await warm_up(session)
        try:
            with frozen_heap():  # what start-up loaded is not walked by every full collection
                yield
        finally:
            await gate.aclose()
            if owns_session:
                await session.aclose()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _last_resort},
    )
    app.state.proxy = proxy
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (
            f"no route {request.url.path[:80]!r}: the API is under /v1 (chat/completions, responses, ...)"
        )
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path[:80]!r}"
    else:
        message = str(exc.detail)
    return error_response(ApiError(exc.status_code, message, code=f"http_{exc.status_code}"))


async def _last_resort(request: Request, exc: Exception) -> Response:
    return error_response(exc)  # logs it (redacted) and answers a 500 without the traceback


def app_from_env() -> Starlette:
    """The app of one ``tierwise serve`` worker, from the settings the command put in the environment."""
    # One thread per inference (e5 is OpenMP): requests already run side by side, and OpenMP's spinning
    # threads fight them for the cores (e5 p50 0.48 s instead of 0.09 s on two busy cores). Set before the
    # engine loads; a user's own setting wins.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from tierwise.session import Session

    session = Session(os.environ.get(ENV_CONFIG) or None)
    session.open()
    workers = int(os.environ.get(ENV_WORKERS) or "1")
    gate: Gate = (
        OpenGate(session) if os.environ.get(ENV_NO_AUTH) == "1" else KeyGate(session, workers=workers)
    )
    max_body = int(os.environ.get(ENV_MAX_BODY) or DEFAULT_MAX_BODY_BYTES)
    return create_app(
        session,
        gate,
        extra_routes=dashboard_routes(session, gate),
        max_body_bytes=max_body,
        owns_session=True,
        warm=True,
    )
