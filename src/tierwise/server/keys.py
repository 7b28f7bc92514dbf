"""``KeyGate``: API keys, their rate limits and their budgets in front of the one path.

``admit`` checks ``Authorization: Bearer tw-...`` against the ledger's key table through an in-memory cache
refreshed in the background (``KeyCache``, every ``cache_ttl_s``), so a hot request costs no database round
trip and a revoke takes effect within about a second in every worker. ``scope`` hands each key one
long-lived proxy run per period and process: its budget is a ``KeyBudget`` capped at the share of the
key's budget this process holds (all of what is left with one worker; chunks leased from the ledger with
several), so the runtime's reservation refuses over-budget calls before they are sent, atomically, under
any concurrency.

Each run is held open by a task of its own (not by the request that happened to open it): the run's
tracing context then lives in that task, and closing it later from another task is clean.

A key without a budget has no money cap of its own: a proxy key never inherits ``per_run_*`` caps, which
are meant for one system run; only the per-process caps (and the key's rpm) apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from tierwise.core import Tier
from tierwise.errors import BudgetExceeded, InputError
from tierwise.ledger import key_allowance, keys
from tierwise.ledger.keys import KeyRow
from tierwise.ledger.records import RunRecord, utcnow
from tierwise.runtime.scope import FanOut, Scope
from tierwise.server.errors import ApiError, from_tierwise
from tierwise.server.gate import Caller
from tierwise.server.key_budget import KeyBudget, KeyBudgetExceeded, period_bounds
from tierwise.server.key_cache import KeyCache
from tierwise.server.rate import RateLimiter

if TYPE_CHECKING:
    from tierwise.session import Session

# Proxy traffic is many independent clients: the run's fan-out limits must not be what throttles them.
PROXY_FAN_OUT = FanOut(per_tier={Tier.LARGE: 256, Tier.MINI: 256, Tier.NANO: 1024}, in_flight=1024)
RUN_KIND = "proxy"
_TOKEN = re.compile(r"tw-[A-Za-z0-9_-]{16,128}")
_CHUNKS_PER_WORKER = 4  # with several workers, each leases a quarter of its fair share at a time


@dataclass(eq=False)
class _KeyRun:
    """One key's proxy run in this process for one period."""

    row: KeyRow
    scope: Scope
    budget: KeyBudget
    period_end: datetime
    holder: asyncio.Task[None]
    done: asyncio.Event
    in_flight: int = 0
    retired: bool = False
    closed: bool = field(default=False)


class KeyGate:
    """The ``Gate`` of ``tierwise serve``: API keys, per-key rpm and per-key budgets."""

    def __init__(
        self,
        session: Session,
        *,
        workers: int = 1,
        now: Callable[[], datetime] = utcnow,
        cache_ttl_s: float = 1.0,
    ) -> None:
        if session.ledger is None:
            raise InputError("KeyGate needs an open session: `async with Session(...) as s: KeyGate(s)`")
        if workers < 1:
            raise InputError(f"workers must be at least 1, got {workers}")
        self._session = session
        self._workers = workers
        self._now = now
        self._engine = keys.open_engine(session.ledger.url)
        self._rate = RateLimiter(self._engine if workers > 1 else None, now)
        self._cache = KeyCache(lambda digest: keys.by_hash(self._engine, digest), cache_ttl_s)
        self._rows: dict[str, KeyRow] = {}  # key id -> row as last read
        self._runs: dict[str, _KeyRun] = {}
        self._opening: dict[str, asyncio.Future[_KeyRun]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # --- admit --------------------------------------------------------------------------------------

    async def admit(self, authorization: str | None) -> Caller:
        digest = keys.secret_hash(_bearer(authorization))
        row = await self._cache.get(digest)
        if row is None or not hmac.compare_digest(row.secret_sha256, digest):
            raise ApiError(
                401,
                "the API key is not valid: check it, or create one with `tierwise keys create NAME`",
                code="invalid_api_key",
            )
        if not row.active:
            raise ApiError(
                403,
                f"the API key {row.name!r} was revoked: create a new one with `tierwise keys create NAME`",
                type="permission_error",
                code="key_revoked",
            )
        if row.rpm is not None:
            wait = await self._rate.admit(row.id, row.rpm)
            if wait is not None:
                raise ApiError(
                    429,
                    f"API key {row.name!r} is over its rate limit of {row.rpm} requests per minute: "
                    "retry after the Retry-After seconds",
                    type="requests",
                    code="rate_limit_exceeded",
                    retry_after_s=wait,
                )
        self._rows[row.id] = row  # as last read, for the key's next run
        return Caller(row.id, row.name, row.admin)

    # --- scope --------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def scope(self, caller: Caller) -> AsyncIterator[Scope]:
        run = await self._current(caller)
        run.in_flight += 1
        try:
            yield run.scope
        except KeyBudgetExceeded as exc:
            wait = (run.period_end - self._now()).total_seconds()
            raise ApiError(
                429, str(exc), type="insufficient_quota", code="budget_exceeded", retry_after_s=max(wait, 1.0)
            ) from None
        except BudgetExceeded as exc:  # a per-process cap: no date at which it renews
            raise from_tierwise(exc) from None
        finally:
            run.in_flight -= 1
            if run.retired and run.in_flight == 0:
                self._close_later(run)

    async def _current(self, caller: Caller) -> _KeyRun:
        run = self._runs.get(caller.key_id)
        if run is not None and self._now() < run.period_end:
            return run
        opening = self._opening.get(caller.key_id)
        if opening is None:
            opening = asyncio.ensure_future(self._roll(caller.key_id))
            self._opening[caller.key_id] = opening

            def forget(f: asyncio.Future[_KeyRun], key_id: str = caller.key_id) -> None:
                if self._opening.get(key_id) is f:
                    del self._opening[key_id]

            opening.add_done_callback(forget)
        # Shielded: a client that hangs up must not cancel the run other requests are waiting for.
        return await asyncio.shield(opening)

    async def _roll(self, key_id: str) -> _KeyRun:
        """Open the key's run for the current period; the previous period's run closes once idle."""
        row = self._rows.get(key_id) or await asyncio.to_thread(keys.find_key, self._engine, key_id)
        new = await self._open(row, self._now())
        old = self._runs.get(key_id)
        self._runs[key_id] = new
        if old is not None:
            old.retired = True
            if old.in_flight == 0:
                self._close_later(old)
        return new

    async def _open(self, row: KeyRow, now: datetime) -> _KeyRun:
        start, end = period_bounds(now, row.period)
        label = f"proxy key {row.name}"
        meta = {"api_key_id": row.id, "api_key": row.name, "period_start": start.isoformat()}
        ready: asyncio.Future[Scope] = asyncio.get_running_loop().create_future()
        done = asyncio.Event()
        holder = asyncio.create_task(self._hold(row, label, meta, ready, done), name=f"tierwise {label}")
        scope = await ready
        try:
            await asyncio.to_thread(keys.link_run, self._engine, scope.id, row.id, start)
            budget = await self._budget(row, scope, start)
            if row.budget_usd is None and scope.budget.caps.usd is not None:
                # The config's per_run_usd was recorded as the run's cap; this run has none of its own.
                ledger = self._session.ledger
                assert ledger is not None
                ledger.start_run(RunRecord(id=scope.id, kind=RUN_KIND, label=label, metadata=meta))
        except BaseException:
            done.set()
            await holder
            raise
        scope.budget = budget
        return _KeyRun(row, scope, budget, end, holder, done)

    async def _hold(
        self, row: KeyRow, label: str, meta: dict[str, str], ready: asyncio.Future[Scope], done: asyncio.Event
    ) -> None:
        try:
            run = self._session.run(
                RUN_KIND, label, budget_usd=row.budget_usd, metadata=meta, fan_out=PROXY_FAN_OUT
            )
            async with run as scope:
                ready.set_result(scope)
                await done.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
                return
            raise

    async def _budget(self, row: KeyRow, scope: Scope, start: datetime) -> KeyBudget:
        """The run's budget: the key's allowance this process holds (none for a key without a budget)."""
        process = scope.budget.parent
        cap = row.budget_usd
        if cap is None:
            return KeyBudget(None, key_name=row.name, parent=process)
        if self._workers == 1:
            held = await asyncio.to_thread(self._take, row, scope.id, start, cap, 0.0)
            return KeyBudget(held, key_name=row.name, parent=process)
        chunk = cap / (self._workers * _CHUNKS_PER_WORKER)
        held = await asyncio.to_thread(self._take, row, scope.id, start, chunk, 0.0)

        def refill(short: float) -> float:
            # Synchronous, on the event loop: rare (once per chunk), and the call waiting needs the answer.
            return self._take(row, scope.id, start, max(short, chunk), short)

        return KeyBudget(held, key_name=row.name, parent=process, refill=refill)

    def _take(self, row: KeyRow, run_id: str, start: datetime, want: float, need: float) -> float:
        assert row.budget_usd is not None
        return key_allowance.take(
            self._engine,
            key_id=row.id,
            period_start=start,
            run_id=run_id,
            cap_usd=row.budget_usd,
            want_usd=want,
            need_usd=need,
        )

    # --- closing ------------------------------------------------------------------------------------

    def _close_later(self, run: _KeyRun) -> None:
        task = asyncio.ensure_future(self._close(run))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, run: _KeyRun) -> None:
        if run.closed:
            return
        run.closed = True
        run.done.set()
        try:
            await run.holder  # the run is finished, flushed and its lease released
        finally:
            if run.row.budget_usd is not None:
                spent = run.budget.spent_usd + run.budget.reserved_usd
                await asyncio.to_thread(key_allowance.give_back, self._engine, run.scope.id, spent)

    async def aclose(self) -> None:
        """Finish every key's run and give back what they hold and did not spend."""
        await self._cache.aclose()
        for fut in list(self._opening.values()):
            with contextlib.suppress(Exception):
                await fut
        runs, self._runs = list(self._runs.values()), {}
        results = await asyncio.gather(
            *(self._close(r) for r in runs), *self._closing, return_exceptions=True
        )
        await asyncio.to_thread(self._engine.dispose)
        for r in results:
            if isinstance(r, BaseException):
                raise r


def _bearer(authorization: str | None) -> str:
    """The key in an ``Authorization: Bearer tw-...`` header; never echoed back in an error."""
    if not authorization or not authorization.strip():
        raise ApiError(
            401,
            "no API key: send the header `Authorization: Bearer tw-...` (create a key with "
            "`tierwise keys create NAME`)",
            code="invalid_api_key",
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or _TOKEN.fullmatch(token) is None:
        raise ApiError(
            401,
            "the Authorization header is malformed: send `Authorization: Bearer tw-...` with a tierwise key",
            code="invalid_api_key",
        )
    return token
