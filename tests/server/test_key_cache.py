"""The key cache: a hot request reads memory only, even when the ledger is slow, while a revoke still
reaches the gate within about the cache's TTL. Real key rows in a real SQLite ledger."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tierwise.ledger import Ledger, keys
from tierwise.ledger.keys import KeyRow
from tierwise.server.key_cache import KeyCache

TTL_S = 0.2
SLOW_DB_S = 0.15  # every read of the ledger takes this long (a busy or remote database)


def _ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/ledger.db"
    Ledger(url).close()  # creates the schema
    return url


async def test_hot_requests_never_wait_on_a_slow_ledger_and_a_revoke_lands_within_the_ttl(
    tmp_path: Path,
) -> None:
    engine = keys.open_engine(_ledger(tmp_path))
    row, secret = keys.create_key(engine, "alice")
    digest = keys.secret_hash(secret)
    reads: list[str] = []

    def slow_read(d: str) -> KeyRow | None:
        reads.append(d)
        time.sleep(SLOW_DB_S)
        return keys.by_hash(engine, d)

    cache = KeyCache(slow_read, TTL_S)
    try:
        first = await cache.get(digest)  # a cold key: the one read on the request path
        assert first is not None and first.id == row.id and first.active
        slowest = 0.0
        deadline = time.monotonic() + 6 * TTL_S  # several sweeps, each a slow read
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            hot = await cache.get(digest)
            slowest = max(slowest, time.perf_counter() - t0)
            assert hot is not None and hot.active
            await asyncio.sleep(0.005)
        assert slowest < SLOW_DB_S / 3, f"a hot request waited {slowest * 1000:.0f} ms on the ledger"
        assert len(reads) >= 3  # the sweep kept reading it in the background

        keys.revoke(engine, "alice")
        t_revoked = time.monotonic()
        while (got := await cache.get(digest)) is not None and got.active:
            assert time.monotonic() - t_revoked < 4 * TTL_S + SLOW_DB_S, "the revoke never reached the cache"
            await asyncio.sleep(0.01)
        assert got is not None and not got.active
    finally:
        await cache.aclose()
        engine.dispose()


async def test_unused_entries_are_forgotten_and_read_again_when_they_come_back(tmp_path: Path) -> None:
    engine = keys.open_engine(_ledger(tmp_path))
    _, secret = keys.create_key(engine, "bob")
    digest = keys.secret_hash(secret)
    unknown = keys.secret_hash("tw-" + "x" * 32)
    reads: list[str] = []

    def read(d: str) -> KeyRow | None:
        reads.append(d)
        return keys.by_hash(engine, d)

    cache = KeyCache(read, TTL_S)
    try:
        assert await cache.get(unknown) is None
        assert (await cache.get(digest)) is not None
        await asyncio.sleep(3.5 * TTL_S)  # idle: the first sweep refreshes both, the next forgets them
        swept = len(reads)
        await asyncio.sleep(2 * TTL_S)
        assert len(reads) == swept, "the sweep keeps reading keys nobody uses"
        assert await cache.get(unknown) is None
        assert reads[-1] == unknown  # forgotten, so read again on its next request
    finally:
        await cache.aclose()
        engine.dispose()
