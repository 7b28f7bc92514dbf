"""Key rows by secret hash, kept fresh in the background so a hot request never waits on the database.

A key's first request reads its row (the one database read on the request path). After that, a sweep every
``ttl_s`` re-reads the rows that were used since the previous sweep and forgets the rest, so a revoke or a
new budget reaches every worker within about ``ttl_s`` while the requests themselves only read memory. An
entry the sweep has not refreshed for ``2 * ttl_s`` (a stalled database) is read again on the request path:
a stale row is never trusted for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tierwise.ledger.keys import KeyRow

log = logging.getLogger("tierwise.server")

MAX_ENTRIES = 10_000  # unknown hashes are cached too: bound what a key-guesser costs


@dataclass(slots=True)
class _Entry:
    row: KeyRow | None
    read_at: float
    used: bool = True


class KeyCache:
    def __init__(self, read: Callable[[str], KeyRow | None], ttl_s: float) -> None:
        self._read = read  # blocking: runs in a thread
        self._ttl = ttl_s
        self._entries: dict[str, _Entry] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def get(self, digest: str) -> KeyRow | None:
        entry = self._entries.get(digest)
        if entry is not None and time.monotonic() - entry.read_at < 2 * self._ttl:
            entry.used = True
            return entry.row
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="tierwise key cache")
        row = await asyncio.to_thread(self._read, digest)
        self._store(digest, row)
        return row

    def _store(self, digest: str, row: KeyRow | None) -> None:
        if digest not in self._entries and len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[digest] = _Entry(row, time.monotonic())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._ttl)
            self._entries = {d: e for d, e in self._entries.items() if e.used}
            used = list(self._entries)
            for entry in self._entries.values():
                entry.used = False  # a request from now on keeps it for the next sweep
            try:
                rows = await asyncio.to_thread(self._read_all, used)
            except Exception:  # the requests read the rows themselves once they are stale
                log.warning("could not refresh API keys from the ledger", exc_info=True)
                continue
            for digest, row in rows:
                entry = self._entries.get(digest)
                if entry is not None:
                    entry.row, entry.read_at = row, time.monotonic()

    def _read_all(self, digests: list[str]) -> list[tuple[str, KeyRow | None]]:
        return [(d, self._read(d)) for d in digests]

    async def aclose(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
