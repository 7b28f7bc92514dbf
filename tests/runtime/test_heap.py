"""A batch's starting heap is out of the cyclic collector's scans while it runs, and back after."""

from __future__ import annotations

import asyncio
import gc
import weakref

from tierwise.runtime.heap import frozen_heap


async def test_frozen_while_any_batch_runs_and_thawed_after_the_last() -> None:
    assert gc.get_freeze_count() == 0
    seen: list[int] = []

    async def batch(hold: float) -> None:
        with frozen_heap():
            seen.append(gc.get_freeze_count())
            await asyncio.sleep(hold)
            seen.append(gc.get_freeze_count())

    await asyncio.gather(batch(0.05), batch(0.01))  # two batches of one process overlap
    assert all(n > 0 for n in seen)
    assert gc.get_freeze_count() == 0


def test_garbage_made_before_is_collected_not_frozen() -> None:
    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle, unreachable once the names go: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    with frozen_heap():
        assert gone() is None  # frozen, it would have stayed alive until the batch ended
