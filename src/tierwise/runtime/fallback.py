"""The middle layer: bounded retries of one model, then another model, under retry budgets and breakers.

A retryable fault (429, 5xx, timeout, malformed body) is retried with full-jitter backoff honouring
``Retry-After``, up to ``max_attempts`` per model. Then the call moves on: first to the user's fallback
chain for that model, then to a *sibling* (another model of the same tier and provider), then one tier
up — but never on to large unless the user's chain names it, so an outage of a cheap model is not
served and paid at large prices. Client errors are neither retried nor moved.

Amplification is bounded twice: a call sends at most ``max_requests_per_call`` requests, and a run's
retries come out of its retry budget (see ``breaker.RetryBudget``). A model whose circuit breaker is
open is skipped without sending anything.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, TypeVar

from tierwise.core import Tier
from tierwise.errors import ProviderError
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.runtime.attempt import Leg
from tierwise.runtime.breaker import Breakers, RetryBudget

if TYPE_CHECKING:
    from tierwise.runtime.scope import Scope

T = TypeVar("T")
Send = Callable[[Leg, int], Awaitable[T]]


class RetryPolicy(Protocol):
    max_attempts: int
    base_delay_s: float
    max_delay_s: float
    repair_attempts: int
    max_requests_per_call: int
    run_retry_ratio: float
    run_min_retries: int
    breaker_failures: int
    breaker_cooldown_s: float


@dataclass(slots=True)
class _Sent:
    n: int = 0  # requests this call has sent, over every model


class Fallback:
    def __init__(
        self,
        catalog: Catalog,
        tiers: Mapping[Tier, str],
        retry: RetryPolicy,
        fallbacks: Mapping[str, list[str]] | None = None,
        *,
        usable: Callable[[ModelSpec], bool] | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        self.catalog, self.tiers, self.retry = catalog, dict(tiers), retry
        self.fallbacks = dict(fallbacks or {})
        self.usable = usable or (lambda spec: True)
        self.breakers = breakers or Breakers(retry.breaker_failures, retry.breaker_cooldown_s)

    def budget(self, scope: Scope) -> RetryBudget:
        if scope.retries is None:
            scope.retries = RetryBudget(self.retry.run_retry_ratio, self.retry.run_min_retries)
        return scope.retries

    async def run(
        self, leg: Leg, send: Send[T], notes: list[str], *, tier_up: bool = True
    ) -> tuple[T, Leg, int]:
        """``send(leg, attempt)`` until it succeeds; returns its value, the leg that served it, attempts."""
        tried: set[str] = set()
        sent = _Sent()
        self.budget(leg.scope).started()
        while True:
            tried.add(leg.spec.id)
            try:
                if not self.breakers.admit(leg.spec.id):
                    raise ProviderError(
                        f"{leg.spec.id} is skipped: its circuit breaker is open after repeated failures",
                        retryable=True,
                    )
                out, n = await self._retrying(leg, send, sent)
                return out, leg, n
            except ProviderError as exc:
                nxt = self.next_model(leg.spec, tried, tier_up=tier_up) if exc.retryable else None
                if nxt is None or not self._may_send(leg, sent):
                    raise
                notes.append(f"{leg.spec.id} kept failing ({exc}); fell back to {nxt.id}")
                d = leg.decision
                why = f"{d.reason}; fell back to {nxt.id} after provider errors"
                leg = leg.on(nxt, replace(d, model=nxt.id, tier=nxt.tier, reason=why))

    def _may_send(self, leg: Leg, sent: _Sent) -> bool:
        """A request beyond the call's first is a retry: within the call's cap and the run's budget."""
        if sent.n == 0:
            return True
        return sent.n < self.retry.max_requests_per_call and self.budget(leg.scope).take()

    async def _retrying(self, leg: Leg, send: Send[T], sent: _Sent) -> tuple[T, int]:
        attempt = 0
        model = leg.spec.id
        while True:
            attempt += 1
            sent.n += 1
            try:
                value = await send(leg, attempt)
            except ProviderError as exc:
                if exc.retryable:
                    self.breakers.failure(model, str(exc))
                if (
                    not exc.retryable
                    or attempt >= self.retry.max_attempts
                    or self.breakers.state(model) == "open"
                    or not self._may_send(leg, sent)
                ):
                    raise
                await asyncio.sleep(self.delay(attempt, exc.retry_after_s))
                continue
            self.breakers.success(model)
            return value, attempt

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry.max_delay_s)
        # Full jitter: concurrent callers hit by the same outage spread out instead of retrying together.
        return random.uniform(0, min(self.retry.max_delay_s, self.retry.base_delay_s * 2 ** (attempt - 1)))

    def next_model(self, spec: ModelSpec, tried: set[str], *, tier_up: bool = True) -> ModelSpec | None:
        """The user's chain for ``spec``, then a sibling of its tier, then the tier above (never large)."""
        for model_id in self.fallbacks.get(spec.id, []):
            candidate = self.catalog.get(model_id)
            if candidate.id not in tried:
                return candidate
        for sibling in self.catalog.in_tier(spec.tier):
            if (
                sibling.id not in tried
                and sibling.provider == spec.provider  # rate limits are per model; keys per provider
                and spec.capabilities <= sibling.capabilities
                and self.usable(sibling)
                and self.breakers.state(sibling.id) != "open"
            ):
                return sibling
        if not tier_up:
            return None
        up = self.above(spec)
        if up is None or up.id in tried or up.tier == Tier.LARGE:
            return None
        return up

    def above(self, spec: ModelSpec) -> ModelSpec | None:
        """The model of the next tier up that is not ``spec`` itself, if any."""
        tier = spec.tier.up()
        while tier is not None:
            model_id = self.tiers.get(tier)
            if model_id is not None and model_id != spec.id:
                return self.catalog.get(model_id)
            tier = tier.up()
        return None
