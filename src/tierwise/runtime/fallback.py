"""The middle layer: bounded retries of one model, then the next model.

A retryable fault (429, 5xx, timeout, malformed body) is retried with full-jitter backoff honouring
``Retry-After``, up to ``max_attempts``; then the call falls back to the configured fallback models, else
to the tier above. Client errors are neither retried nor moved.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Protocol, TypeVar

from tierwise.core import Tier
from tierwise.errors import ProviderError
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.runtime.attempt import Leg

T = TypeVar("T")
Send = Callable[[Leg, int], Awaitable[T]]


class RetryPolicy(Protocol):
    max_attempts: int
    base_delay_s: float
    max_delay_s: float
    repair_attempts: int


class Fallback:
    def __init__(
        self,
        catalog: Catalog,
        tiers: Mapping[Tier, str],
        retry: RetryPolicy,
        fallbacks: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.catalog, self.tiers, self.retry = catalog, dict(tiers), retry
        self.fallbacks = dict(fallbacks or {})

    async def run(
        self, leg: Leg, send: Send[T], notes: list[str], *, tier_up: bool = True
    ) -> tuple[T, Leg, int]:
        """``send(leg, attempt)`` until it succeeds; returns its value, the leg that served it, attempts."""
        tried: set[str] = set()
        while True:
            tried.add(leg.spec.id)
            try:
                out, n = await self._retrying(leg, send)
                return out, leg, n
            except ProviderError as exc:
                nxt = self.next_model(leg.spec, tried, tier_up=tier_up) if exc.retryable else None
                if nxt is None:
                    raise
                notes.append(f"{leg.spec.id} kept failing ({exc}); fell back to {nxt.id}")
                d = leg.decision
                why = f"{d.reason}; fell back to {nxt.id} after provider errors"
                leg = leg.on(nxt, replace(d, model=nxt.id, tier=nxt.tier, reason=why))

    async def _retrying(self, leg: Leg, send: Send[T]) -> tuple[T, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await send(leg, attempt), attempt
            except ProviderError as exc:
                if not exc.retryable or attempt >= self.retry.max_attempts:
                    raise
                await asyncio.sleep(self.delay(attempt, exc.retry_after_s))

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry.max_delay_s)
        # Full jitter: concurrent callers hit by the same outage spread out instead of retrying together.
        return random.uniform(0, min(self.retry.max_delay_s, self.retry.base_delay_s * 2 ** (attempt - 1)))

    def next_model(self, spec: ModelSpec, tried: set[str], *, tier_up: bool = True) -> ModelSpec | None:
        for model_id in self.fallbacks.get(spec.id, []):
            candidate = self.catalog.get(model_id)
            if candidate.id not in tried:
                return candidate
        if not tier_up:
            return None
        up = self.above(spec)
        return up if up is not None and up.id not in tried else None

    def above(self, spec: ModelSpec) -> ModelSpec | None:
        """The model of the next tier up that is not ``spec`` itself, if any."""
        tier = spec.tier.up()
        while tier is not None:
            model_id = self.tiers.get(tier)
            if model_id is not None and model_id != spec.id:
                return self.catalog.get(model_id)
            tier = tier.up()
        return None
