"""The spend dashboard at ``/``: a static page from the package (no CDN, works offline) and its JSON API
under ``/dashboard/api/``, which only an admin key may read.

The page holds no data: it asks for the admin key, keeps it in sessionStorage and sends it with every
fetch. Ledger reads are synchronous SQL, so they run in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tierwise.errors import InputError, LedgerError
from tierwise.ledger.dashboard import RANGES, DashboardQueries
from tierwise.server.errors import ApiError
from tierwise.server.gate import Gate

if TYPE_CHECKING:
    from tierwise.session import Session

STATIC_PACKAGE = ("tierwise.server", "static")
# The page runs only our own script and style and talks only to this server: hostile text from the
# ledger could not load or send anything even if it ever reached the DOM as markup.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
API_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
MAX_RUNS = 200

Handler = Callable[[Request, DashboardQueries], Any]


def dashboard_routes(session: Session, gate: Gate) -> list[BaseRoute]:
    """``GET /``, ``/dashboard/static/...`` and the admin-only ``/dashboard/api/...`` endpoints."""
    page = resources.files(STATIC_PACKAGE[0]).joinpath(STATIC_PACKAGE[1], "index.html").read_text("utf-8")
    queries: list[DashboardQueries] = []  # built on first use: the session opens after the app is made

    def reads() -> DashboardQueries:
        if not queries:
            if session.ledger is None or session.runtime is None:
                raise ApiError(
                    503, "the server's session is not open yet: retry in a moment", type="api_error"
                )
            queries.append(DashboardQueries(session.ledger, session.runtime.large_model()))
        return queries[0]

    def api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                caller = await gate.admit(request.headers.get("authorization"))
                if not caller.admin:
                    raise ApiError(
                        403,
                        f"the key {caller.name!r} is not an admin key: open the dashboard with the admin key",
                        type="permission_error",
                        code="not_admin",
                    )
                data = await asyncio.to_thread(handler, request, reads())
            except ApiError as exc:
                return JSONResponse(exc.body(), exc.status, headers={**API_HEADERS, **exc.headers()})
            except InputError as exc:
                err = ApiError(400, str(exc), code="invalid_request")
                return JSONResponse(err.body(), err.status, headers=API_HEADERS)
            except LedgerError as exc:
                missing = "no run with id" in str(exc)
                err = ApiError(404 if missing else 503, str(exc), type="api_error", code="ledger_error")
                return JSONResponse(err.body(), err.status, headers=API_HEADERS)
            return JSONResponse(data, headers=API_HEADERS)

        return endpoint

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    return [
        Route("/", index, methods=["GET"], name="dashboard"),
        Route("/dashboard/api/overview", api(_overview), methods=["GET"]),
        Route("/dashboard/api/spend", api(_spend), methods=["GET"]),
        Route("/dashboard/api/totals", api(_totals), methods=["GET"]),
        Route("/dashboard/api/runs", api(_runs), methods=["GET"]),
        Route("/dashboard/api/runs/{run_id:str}", api(_run), methods=["GET"]),
        Route("/dashboard/api/health", api(_health), methods=["GET"]),
        Mount("/dashboard/static", StaticFiles(packages=[STATIC_PACKAGE]), name="dashboard-static"),
    ]


def _range(request: Request, default: str = "1h") -> str:
    value = request.query_params.get("range", default)
    if value not in RANGES:
        raise InputError(f"unknown range {value!r}: use one of {', '.join(RANGES)}")
    return value


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "25")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_RUNS:
        raise InputError(f"limit={raw!r}: give a whole number from 1 to {MAX_RUNS}")
    return int(raw)


def _overview(request: Request, q: DashboardQueries) -> dict[str, Any]:
    """Everything the page polls, in one request: spend series, totals, recent runs, routing health."""
    span = _range(request)
    return {
        "spend": q.spend_series(span, request.query_params.get("by", "tier")),
        "totals": q.totals(span),
        "runs": q.recent_runs(_limit(request)),
        "health": q.routing_health(span),
    }


def _spend(request: Request, q: DashboardQueries) -> dict[str, Any]:
    return q.spend_series(_range(request), request.query_params.get("by", "tier"))


def _totals(request: Request, q: DashboardQueries) -> dict[str, Any]:
    return q.totals(_range(request))


def _runs(request: Request, q: DashboardQueries) -> list[dict[str, Any]]:
    return q.recent_runs(_limit(request))


def _run(request: Request, q: DashboardQueries) -> dict[str, Any]:
    return q.run_tree(request.path_params["run_id"])


def _health(request: Request, q: DashboardQueries) -> dict[str, Any]:
    return q.routing_health(_range(request, "24h"))
