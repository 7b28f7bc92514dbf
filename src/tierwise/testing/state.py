"""The chaos server's mutable state: the active script, what of it has been used up, and the request log.

Only the server's event loop touches it (control endpoints included), so it needs no locks.
"""

from __future__ import annotations

import random
import time
from collections import deque
from typing import Any

from tierwise.testing.script import Endpoint, Fault, Rule, Script

__all__ = ["ChaosState"]

_HIDDEN_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})


def _public_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    decoded = ((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw)
    return {k: v for k, v in decoded if k not in _HIDDEN_HEADERS}


class ChaosState:
    """Script + counters + log. `reset()` returns to the script the server started with."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        latency_s: float = 0.0,
        per_token_latency_s: float = 0.0,
        embedding_dim: int = 64,
        require_key: str | None = None,
        log_limit: int = 10_000,
    ) -> None:
        if latency_s < 0 or per_token_latency_s < 0:
            raise ValueError(f"latencies must be >= 0, got {latency_s=} {per_token_latency_s=}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self._initial = script or Script()
        self._default_latency_s = latency_s
        self._default_per_token_s = per_token_latency_s
        self._default_dim = embedding_dim
        self.require_key = require_key
        # Bounded so a long benchmark against one server cannot grow memory without limit.
        self.log: deque[dict[str, Any]] = deque(maxlen=log_limit)
        self.served = 0
        self.load(self._initial)

    def load(self, script: Script) -> None:
        """Make `script` active with fresh counters (rule uses, schedule counts, RNG)."""
        self.script = script
        self.latency_s = self._default_latency_s if script.latency_s is None else script.latency_s
        self.per_token_latency_s = (
            self._default_per_token_s if script.per_token_latency_s is None else script.per_token_latency_s
        )
        self.embedding_dim = script.embedding_dim or self._default_dim
        self._remaining: list[int | None] = [rule.times for rule in script.rules]
        self._seen: list[int] = [0] * len(script.faults)
        self._rng = random.Random(script.seed)

    def reset(self) -> None:
        """Back to the startup script, counters fresh, log empty."""
        self.load(self._initial)
        self.log.clear()
        self.served = 0

    def next_id(self) -> int:
        self.served += 1
        return self.served

    def record(
        self, path: str, model: str, body: object, raw_headers: list[tuple[bytes, bytes]]
    ) -> dict[str, Any]:
        """Append a log entry and return it, so the handler can add what it decided (rule, fault).
        Headers stay raw bytes here and are decoded only when the log is read: most never are."""
        entry: dict[str, Any] = {
            "path": path,
            "model": model,
            "body": body,
            "headers": raw_headers,
            "timestamp": time.time(),
            "rule": None,
            "fault": None,
        }
        self.log.append(entry)
        return entry

    def log_view(self) -> list[dict[str, Any]]:
        """The log as served by GET /_chaos/requests: headers decoded, credentials left out."""
        return [{**entry, "headers": _public_headers(entry["headers"])} for entry in self.log]

    def scheduled_fault(self, endpoint: Endpoint, model: str) -> Fault | None:
        """The first schedule that fires for this request; every applicable schedule counts it."""
        fired: Fault | None = None
        for i, sched in enumerate(self.script.faults):
            if endpoint not in sched.endpoints or (sched.model is not None and sched.model != model):
                continue
            self._seen[i] += 1
            n = self._seen[i]
            if sched.first is not None:
                hit = n <= sched.first
            elif sched.every is not None:
                hit = n % sched.every == 0
            else:
                # Draw even when an earlier schedule fired, so one schedule's draws do not depend on others.
                hit = self._rng.random() < (sched.probability or 0.0)
            if hit and fired is None:
                fired = sched.fault
        return fired

    def pick_rule(
        self, model: str, user: str, system: str, has_rf: bool, has_tools: bool
    ) -> tuple[int, Rule] | None:
        """The first matching rule with uses left, consuming one use."""
        for i, rule in enumerate(self.script.rules):
            left = self._remaining[i]
            if left == 0:
                continue
            if rule.match.matches(model, user, system, has_rf, has_tools):
                if left is not None:
                    self._remaining[i] = left - 1
                return i, rule
        return None
