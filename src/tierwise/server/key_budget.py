"""A key's budget inside one process: the run budget of the key's proxy run, capped at what it holds.

``KeyBudget`` is the one path's ``Budget`` (so reservation is atomic under concurrency, before any upstream
call) whose cap is the allowance this process holds for the key. When a reservation would pass it, the
budget asks its ``refill`` for more (several workers: a conditional UPDATE in the ledger) before refusing
with ``KeyBudgetExceeded``, which the gate answers as 429 with Retry-After at the period's end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tierwise.errors import BudgetExceeded
from tierwise.runtime.budget import Budget, Caps, Reservation

# Caps must be above 0; holding nothing is a cap no priced call fits under.
_NOTHING = sys.float_info.min
_REFILL_PAUSE_S = 0.25  # after the key's allowance ran dry, do not ask the database again at once


def period_bounds(now: datetime, period: str) -> tuple[datetime, datetime]:
    """The UTC day or calendar month holding ``now``: [start, end)."""
    now = now.astimezone(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


class KeyBudgetExceeded(BudgetExceeded):
    """The key's budget for its period is spent (not a process cap)."""


class KeyBudget(Budget):
    """A run budget whose money cap is what this process holds of the key's allowance."""

    def __init__(
        self,
        held_usd: float | None,
        *,
        key_name: str,
        parent: Budget | None,
        refill: Callable[[float], float] | None = None,
    ) -> None:
        super().__init__(_caps(held_usd), name=f"key {key_name}", parent=parent)
        self.key_name = key_name
        self.held_usd = held_usd
        self._refill = refill
        self._dry_until = 0.0

    def grow(self, usd: float) -> None:
        """Hold ``usd`` more (a cap only ever loosens while calls run, so no lock is needed)."""
        self.held_usd = (self.held_usd or 0.0) + usd
        self.caps = _caps(self.held_usd)

    def _binds(self, usd: float | None) -> bool:
        if self.overrun is not None:
            return True
        left = self.remaining_usd
        return usd is not None and left is not None and usd > left + 1e-12

    def reserve(self, usd: float | None, tokens: int, *, what: str = "call") -> Reservation:
        try:
            return super().reserve(usd, tokens, what=what)
        except BudgetExceeded:
            if not self._binds(usd):
                raise  # a process cap, or a model without prices: not the key's budget
        assert usd is not None or self.overrun is not None
        if self.overrun is None and self._refill is not None and time.monotonic() >= self._dry_until:
            short = (usd or 0.0) - (self.remaining_usd or 0.0)
            got = self._refill(short)
            if got > 0:
                self.grow(got)
                try:
                    return super().reserve(usd, tokens, what=what)
                except BudgetExceeded:
                    if not self._binds(usd):
                        raise
            else:
                self._dry_until = time.monotonic() + _REFILL_PAUSE_S
        raise KeyBudgetExceeded(
            f"{what}: the budget of API key {self.key_name!r} for this period is spent "
            "(its calls reserve their worst case before they are sent): wait for the next period "
            "or use a key with budget left"
        )


def _caps(held_usd: float | None) -> Caps:
    if held_usd is None:
        return Caps()
    return Caps(usd=max(held_usd, _NOTHING))
