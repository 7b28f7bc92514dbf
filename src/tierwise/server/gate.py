"""What stands between a request and the one path: who is calling, and the run (scope) its calls go in.

``Gate`` is the contract the routes use; ``KeyGate`` (``tierwise.server.keys``) checks API keys, rate
limits and per-key budgets; ``OpenGate`` serves without keys (``tierwise serve --no-auth``, loopback only).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tierwise.core import Tier
from tierwise.runtime.scope import FanOut, Scope

if TYPE_CHECKING:
    from tierwise.session import Session


@dataclass(frozen=True, slots=True)
class Caller:
    """An admitted caller: the key's id and name (spend is attributed to them) and whether it is an admin."""

    key_id: str
    name: str
    admin: bool = False


class Gate(Protocol):
    async def admit(self, authorization: str | None) -> Caller:
        """The caller behind an ``Authorization: Bearer ...`` header, counted against its rate limit.

        Raises ``ApiError`` 401 (missing or unknown key), 403 (revoked), 429 (over rpm, with Retry-After).
        """
        ...

    def scope(self, caller: Caller) -> AbstractAsyncContextManager[Scope]:
        """The run the caller's calls go in; its budget is the caller's cap for the period, so the one path's
        reservation refuses before the upstream call. ``BudgetExceeded`` raised in the body leaves it as
        ``ApiError`` 429 (with Retry-After at the period's end when the key's budget is spent)."""
        ...

    async def aclose(self) -> None:
        """Finish the runs the gate opened."""
        ...


# A proxy serves many clients at once: the run's fan-out must not throttle it to a system's defaults.
PROXY_FAN_OUT = FanOut(per_tier={Tier.LARGE: 256, Tier.MINI: 256, Tier.NANO: 1024}, in_flight=1024)


class OpenGate:
    """No keys (``tierwise serve --no-auth``): every caller is the open admin, and every call goes in one
    long-lived run, opened on first use (no per-request run) and finished by ``aclose``.

    The run is held by a task of its own: its tracing context is entered and left in one context, not in
    whichever request happened to open it.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._caller = Caller("open", "open", admin=True)
        self._scope: Scope | None = None
        self._holder: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()

    async def admit(self, authorization: str | None) -> Caller:
        return self._caller

    @asynccontextmanager
    async def scope(self, caller: Caller) -> AsyncIterator[Scope]:
        yield self._scope if self._scope is not None else await self._open()

    async def _open(self) -> Scope:
        async with self._lock:  # the first requests arrive together: open one run, not several
            if self._scope is None:
                opened: asyncio.Future[Scope] = asyncio.get_running_loop().create_future()
                self._holder = asyncio.create_task(self._hold(opened), name="tierwise-proxy-run")
                self._scope = await opened
            return self._scope

    async def _hold(self, opened: asyncio.Future[Scope]) -> None:
        try:
            async with self._session.run("proxy", "proxy (no auth)", fan_out=PROXY_FAN_OUT) as scope:
                opened.set_result(scope)
                await self._stop.wait()
        except BaseException as exc:
            if not opened.done():
                opened.set_exception(exc)
            raise

    async def aclose(self) -> None:
        holder, self._holder, self._scope = self._holder, None, None
        if holder is not None:
            self._stop.set()
            await holder
