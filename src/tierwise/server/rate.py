"""Requests per minute per key, in fixed one-minute windows (UTC epoch minutes).

One worker counts in memory (no database round trip); several workers count in the ledger
(``key_allowance.count_request``, a conditional UPDATE), so the limit is global. A refused request is told
to retry when its window ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from tierwise.ledger import key_allowance


class RateLimiter:
    def __init__(self, engine: Engine | None, now: Callable[[], datetime]) -> None:
        self._engine = engine  # None: this process is the only one serving (workers == 1)
        self._now = now
        self._counts: dict[str, tuple[int, int]] = {}  # key id -> (window, requests in it)

    async def admit(self, key_id: str, rpm: int) -> float | None:
        """Count a request; None when admitted, else the seconds until the key's window ends."""
        ts = self._now().timestamp()
        window = int(ts // 60)
        if self._engine is None:
            seen, n = self._counts.get(key_id, (window, 0))
            n = n if seen == window else 0
            if n >= rpm:
                return (window + 1) * 60 - ts
            self._counts[key_id] = (window, n + 1)
            return None
        ok = await asyncio.to_thread(key_allowance.count_request, self._engine, key_id, window, rpm)
        return None if ok else (window + 1) * 60 - ts
