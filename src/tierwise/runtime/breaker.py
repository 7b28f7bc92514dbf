"""Circuit breakers per model, and the retry budget of a run.

A breaker opens after ``failures`` consecutive retryable faults of one model: while open, calls skip the
model (fallback moves on without sending); after ``cooldown_s`` one probe is let through (half-open);
its success closes the breaker, its failure opens it again. Transitions are reported to a sink (the
ledger), so an operator sees which model was cut off and why.

A run's retry budget bounds amplification in an outage: retries (any request beyond a call's first)
are allowed up to ``minimum + ratio × first requests`` of the run, so a fault rate of 20% is served
almost in full while a total outage costs about ``1 + ratio`` requests per call, not attempts × tiers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class _Breaker:
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False


class Breakers:
    """One breaker per model id, shared by every call of the runtime (thread-safe)."""

    def __init__(
        self,
        failures: int = 5,
        cooldown_s: float = 30.0,
        on_change: Callable[[str, State, int, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold, self.cooldown_s = failures, cooldown_s
        self.on_change = on_change
        self.clock = clock
        self._b: dict[str, _Breaker] = {}
        self._lock = threading.Lock()

    def state(self, model: str) -> State:
        with self._lock:
            return self._b.get(model, _Breaker()).state

    def admit(self, model: str) -> bool:
        """May a request go to ``model`` now? In half-open state only one probe is in flight."""
        change: tuple[State, int] | None = None
        with self._lock:
            b = self._b.get(model)
            if b is None or b.state == "closed":
                return True
            if b.state == "open":
                if self.clock() - b.opened_at < self.cooldown_s:
                    return False
                b.state, b.probing = "half_open", True
                change = ("half_open", b.failures)
            elif b.probing:
                return False
            else:
                b.probing = True
        if change is not None:
            self._report(model, *change, f"probing after {self.cooldown_s:g} s open")
        return True

    def success(self, model: str) -> None:
        with self._lock:
            b = self._b.get(model)
            if b is None or (b.state == "closed" and b.failures == 0):
                return
            was = b.state
            b.state, b.failures, b.probing = "closed", 0, False
        if was != "closed":
            self._report(model, "closed", 0, "a request succeeded")

    def failure(self, model: str, error: str) -> None:
        change = False
        with self._lock:
            b = self._b.setdefault(model, _Breaker())
            b.failures += 1
            b.probing = False
            if b.state == "half_open" or (b.state == "closed" and b.failures >= self.threshold):
                b.state, b.opened_at, change = "open", self.clock(), True
            n = b.failures
        if change:
            self._report(model, "open", n, error)

    def _report(self, model: str, state: State, failures: int, why: str) -> None:
        if self.on_change is not None:
            self.on_change(model, state, failures, why)


@dataclass(slots=True)
class RetryBudget:
    """Retries a run may still spend: ``minimum`` plus ``ratio`` per first request (thread-safe)."""

    ratio: float = 0.5
    minimum: int = 20
    first: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def started(self) -> None:
        with self._lock:
            self.first += 1

    def take(self) -> bool:
        with self._lock:
            if self.retries >= self.minimum + self.ratio * self.first:
                return False
            self.retries += 1
            return True
