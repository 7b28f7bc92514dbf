"""A tierwise run held open for a framework run that gives us no ``async with`` to put it in.

The Agents SDK tells a model which run a call belongs to (an owner object) and when that run has ended,
but the two moments are different calls. ``Session.run`` is an async context manager whose tracing span
must be entered and left in one task, so a small holder task owns it: ``open`` starts the holder and waits
for the scope, ``close`` lets the holder leave the context (with the framework's error, if the run
failed, so the ledger says ``failed`` / ``overrun`` / ``interrupted`` as for any run).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tierwise.runtime.scope import FanOut, Scope
    from tierwise.session import Session


class _Ended(Exception):
    """The framework run failed: raised inside the held run so Session.run records why."""


class HeldRun:
    def __init__(
        self,
        session: Session,
        *,
        kind: str,
        label: str,
        budget_usd: float | None,
        fan_out: FanOut | None = None,
    ) -> None:
        self._session, self._kind, self._label, self._budget = session, kind, label, budget_usd
        self._fan_out = fan_out
        self._ready: asyncio.Future[Scope] | None = None
        self._finish: asyncio.Future[BaseException | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    async def scope(self) -> Scope:
        """The run's scope, opening the run on first use (concurrent first uses share one run)."""
        if self._ready is None:
            loop = asyncio.get_running_loop()
            self._ready, self._finish = loop.create_future(), loop.create_future()
            self._task = loop.create_task(self._hold(), name=f"tierwise-run {self._label[:40]}")
        return await asyncio.shield(self._ready)

    async def _hold(self) -> None:
        assert self._ready is not None and self._finish is not None
        try:
            run = self._session.run(self._kind, self._label, budget_usd=self._budget, fan_out=self._fan_out)
            async with run as scope:
                self._ready.set_result(scope)
                exc = await self._finish
                if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
                    raise asyncio.CancelledError()
                if exc is not None:
                    raise _Ended(f"{type(exc).__name__}: {exc}")
        except BaseException as exc:  # recorded by Session.run; the framework raises its own error
            if not self._ready.done():
                self._ready.set_exception(exc)

    async def close(self, error: BaseException | None = None) -> None:
        """End the run (``error``: why the framework run failed) and wait until the ledger has it."""
        self.closed = True
        if self._finish is None or self._task is None:
            return
        if not self._finish.done():
            self._finish.set_result(error)
        await asyncio.shield(self._task)
