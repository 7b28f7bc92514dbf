"""Hard caps on money, tokens and calls: reserve the worst case before a call, settle after.

A call's reservation counts against every cap above it (run, then process) at once, under one lock, so
any number of concurrent calls — asyncio tasks or threads — can never together pass a cap.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from tierwise.errors import BudgetExceeded, InputError


@dataclass(frozen=True, slots=True)
class Caps:
    usd: float | None = None
    tokens: int | None = None
    calls: int | None = None

    def __post_init__(self) -> None:
        for name in ("usd", "tokens", "calls"):
            value = getattr(self, name)
            if value is None:
                continue
            # NaN compares false to everything (it would disable the cap) and inf is no cap at all.
            finite = not isinstance(value, float) or math.isfinite(value)
            if not (finite and value > 0):
                raise InputError(
                    f"budget {name} must be a finite number greater than 0, got {value}: pass a positive cap"
                )


@dataclass(slots=True)
class Reservation:
    usd: float
    tokens: int
    budgets: tuple[Budget, ...]
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Overrun:
    """A settled call that cost more than its cap had left: the provider billed past the estimate."""

    budget: str
    cap_usd: float
    spent_usd: float

    @property
    def over_usd(self) -> float:
        return self.spent_usd - self.cap_usd

    def __str__(self) -> str:
        return (
            f"the {self.budget} budget of ${self.cap_usd:.6g} was overrun by ${self.over_usd:.6f} "
            "(the provider billed more than the worst-case estimate); the run is stopped"
        )


_LOCK = threading.Lock()  # one lock for the whole hierarchy keeps parent and child checks atomic


class Budget:
    """A cap (``Caps``) with a parent: a run's budget sits under the process budget."""

    def __init__(
        self,
        caps: Caps | None = None,
        *,
        name: str = "run",
        parent: Budget | None = None,
        counts: Budget | None = None,
    ) -> None:
        self.caps = caps or Caps()
        self.name = name
        self.parent = parent
        # A *view* checks its own caps against another budget's counters (``counts``) and keeps none of
        # its own: each session's per-process caps apply to the one process-wide total.
        self.counts = counts
        self.overrun: Overrun | None = None
        self.spent_usd = 0.0
        self.spent_tokens = 0
        self.calls = 0
        self.reserved_usd = 0.0
        self.reserved_tokens = 0
        self.reserved_calls = 0

    def _chain(self) -> tuple[Budget, ...]:
        """The budgets that keep counters for a call of this one: itself and its parents, views skipped."""
        return tuple(b for b in self._lineage() if b.counts is None)

    def _lineage(self) -> tuple[Budget, ...]:
        chain: list[Budget] = []
        node: Budget | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        return tuple(chain)

    @property
    def caps_spend(self) -> bool:
        """A money or token cap applies to calls under this budget (its own or one above): reservations
        must then be as tight as the tokenizer can make them, or fewer calls would fit under it."""
        return any(b.caps.usd is not None or b.caps.tokens is not None for b in self._lineage())

    @property
    def caps_counts(self) -> bool:
        """A token or call cap applies to calls under this budget (its own or one above)."""
        return any(b.caps.tokens is not None or b.caps.calls is not None for b in self._lineage())

    def headroom_usd(self) -> float | None:
        """What the tightest money cap above (and on) this budget has left; None when none applies."""
        with _LOCK:
            left = [
                b.caps.usd - (b.counts or b).spent_usd - (b.counts or b).reserved_usd
                for b in self._lineage()
                if b.caps.usd is not None
            ]
        return max(min(left), 0.0) if left else None

    @property
    def remaining_usd(self) -> float | None:
        if self.caps.usd is None:
            return None
        return self.caps.usd - self.spent_usd - self.reserved_usd

    def reserve(self, usd: float | None, tokens: int, *, what: str = "call") -> Reservation:
        """Claim the worst case of one call, or raise BudgetExceeded before anything is sent."""
        chain = self._chain()
        with _LOCK:
            for b in self._lineage():
                b._check(usd, tokens, what)
            amount = usd or 0.0
            for b in chain:
                b.reserved_usd += amount
                b.reserved_tokens += tokens
                b.reserved_calls += 1
        return Reservation(amount, tokens, chain)

    def _check(self, usd: float | None, tokens: int, what: str) -> None:
        caps = self.caps
        if self.overrun is not None:
            raise BudgetExceeded(f"{what}: {self.overrun}")
        if self.counts is not None:  # a view: this budget's caps, the counted budget's totals
            self.counts._check_caps(caps, self.name, usd, tokens, what)
            return
        self._check_caps(caps, self.name, usd, tokens, what)

    def _check_caps(self, caps: Caps, name: str, usd: float | None, tokens: int, what: str) -> None:
        if caps.usd is not None:
            if usd is None:
                raise BudgetExceeded(
                    f"{what}: the model has no known price, so the {name} budget of ${caps.usd:.6g} "
                    "cannot be enforced: set its prices under [[models]] in tierwise.toml"
                )
            left = caps.usd - self.spent_usd - self.reserved_usd
            if usd > left + 1e-12:
                raise BudgetExceeded(
                    f"{what} needs up to ${usd:.6f} (worst case) but the {name} budget has "
                    f"${max(left, 0):.6f} left of ${caps.usd:.6g}: "
                    "raise the budget or lower max output tokens"
                )
        if caps.tokens is not None:
            left_t = caps.tokens - self.spent_tokens - self.reserved_tokens
            if tokens > left_t:
                raise BudgetExceeded(
                    f"{what} needs up to {tokens} tokens but the {name} budget has {max(left_t, 0)} "
                    f"left of {caps.tokens}: raise the token cap"
                )
        if caps.calls is not None and self.calls + self.reserved_calls + 1 > caps.calls:
            raise BudgetExceeded(
                f"{what}: the {name} budget allows {caps.calls} calls and all are used: raise the call cap"
            )

    def commit(self, reservation: Reservation, usd: float | None, tokens: int) -> Overrun | None:
        """Replace the reservation by what the call really cost.

        A provider can bill more than the worst case we reserved (its tokenizer, hidden prompt tokens).
        The money is then spent: it is counted, and if that passes a cap the budget is *overrun* — every
        later reservation under it is refused, so the overshoot is bounded by this one call. Returns the
        overrun (the first budget passed), or None.
        """
        with _LOCK:
            if reservation.settled:
                return None
            reservation.settled = True
            for b in reservation.budgets:
                b.reserved_usd -= reservation.usd
                b.reserved_tokens -= reservation.tokens
                b.reserved_calls -= 1
                b.spent_usd += usd or 0.0
                b.spent_tokens += tokens
                b.calls += 1
            if usd is None or usd <= reservation.usd:
                return None
            return self._mark_overruns(reservation)

    def _mark_overruns(self, reservation: Reservation) -> Overrun | None:
        first: Overrun | None = None
        start = reservation.budgets[0] if reservation.budgets else self
        for b in start._lineage():
            counted = b.counts or b
            cap = b.caps.usd
            if cap is not None and counted.spent_usd > cap + 1e-12 and b.overrun is None:
                b.overrun = Overrun(b.name, cap, counted.spent_usd)
                first = first or b.overrun
        return first

    def draw(self, reservation: Reservation, usd: float, tokens: int, calls: int) -> Overrun | None:
        """Count calls made elsewhere under a grant (a reservation a worker process spends from): their
        cost moves from the reservation to spent, as far as the grant holds; past it, as in ``commit``,
        the money is spent anyway and the budgets passed are overrun. The grant stays open (``release``
        gives back what is left)."""
        with _LOCK:
            take = min(usd, reservation.usd)
            reservation.usd -= take
            for b in reservation.budgets:
                b.reserved_usd -= take
                b.spent_usd += usd
                b.spent_tokens += tokens
                b.calls += calls
            if usd <= take + 1e-12:
                return None
            return self._mark_overruns(reservation)

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back unused (the request never reached the provider)."""
        with _LOCK:
            if reservation.settled:
                return
            reservation.settled = True
            for b in reservation.budgets:
                b.reserved_usd -= reservation.usd
                b.reserved_tokens -= reservation.tokens
                b.reserved_calls -= 1

    def child(self, caps: Caps | None = None, *, name: str = "run") -> Budget:
        return Budget(caps, name=name, parent=self)

    def overrun_seen(self) -> Overrun | None:
        """The first overrun of this budget or any above it, if a call passed a cap."""
        return next((b.overrun for b in self._lineage() if b.overrun is not None), None)

    def view(self, caps: Caps, *, name: str = "process") -> Budget:
        """A budget with ``caps`` over this one's totals: calls under it count here, checked there."""
        return Budget(caps, name=name, parent=self, counts=self)
