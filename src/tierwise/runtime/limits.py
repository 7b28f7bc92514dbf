"""Per-model request rate limits (requests per minute), shared by every caller in the process."""

from __future__ import annotations

from aiolimiter import AsyncLimiter

from tierwise.models.spec import ModelSpec


class RateLimits:
    def __init__(self) -> None:
        self._limiters: dict[str, AsyncLimiter] = {}

    def for_model(self, spec: ModelSpec) -> AsyncLimiter | None:
        if spec.rpm is None:
            return None
        limiter = self._limiters.get(spec.id)
        if limiter is None:
            # Over one second when rpm allows it, so bursts stay small instead of a minute's worth at once.
            limiter = AsyncLimiter(spec.rpm / 60.0, 1.0) if spec.rpm >= 60 else AsyncLimiter(spec.rpm, 60.0)
            self._limiters[spec.id] = limiter
        return limiter
