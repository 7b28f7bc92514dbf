"""The local executor: bounded concurrency over the one path in this process.

Per-item work runs up to ``concurrency`` calls at once (the run's fan-out limits apply on top); per-block
work runs one block at a time, since its cost is CPU (embeddings, a classifier) that another block could
only steal from. A budget refusal stops dispatching: items in flight finish, the rest stay for a resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from tierwise.core import Task
from tierwise.errors import BudgetExceeded
from tierwise.runtime.heap import frozen_heap
from tierwise.runtime.scope import Scope
from tierwise.runtime.warm import warm_local
from tierwise.scale.inputs import Item
from tierwise.scale.pool import WorkerPool
from tierwise.scale.tasks import TaskSpec
from tierwise.scale.work import BlockWork, item_row, item_tasks

# Items whose tasks are built, and kinds inferred, together: one classifier pass per block (~4 ms on the
# loop for 64) instead of one per call, at a third of the CPU per item.
_TASK_BLOCK = 64

Emit = Callable[[list[tuple[int, dict[str, Any]]]], None]
Slot = Callable[[int], Awaitable[None]]


async def _no_wait(seq: int) -> None:
    return None


def blocks(items: Iterable[tuple[int, Item]], size: int) -> Iterator[list[tuple[int, Item]]]:
    it = iter(items)
    while block := list(islice(it, size)):
        yield block


async def run_local(
    scope: Scope,
    spec: TaskSpec,
    items: Iterable[tuple[int, Item]],
    emit: Emit,
    *,
    slot: Slot = _no_wait,
    concurrency: int = 50,
    block_size: int = 512,
    pool: WorkerPool | None = None,
) -> BudgetExceeded | None:
    """Run every item, emitting rows as they finish; returns the budget refusal that stopped it, if any.
    With a ``pool``, worker processes take a share of the per-item calls (``scale.pool``)."""
    if spec.per_block:
        work = BlockWork(scope, spec)
        for block in blocks(items, block_size):
            await slot(block[-1][0])
            try:
                rows = await work.rows([it for _, it in block])
            except BudgetExceeded as exc:
                return exc
            emit([(seq, r) for (seq, _), r in zip(block, rows, strict=True)])
        return None

    if scope.runtime is not None:
        # The first calls would load the kind classifier and the tokenizer on the event loop while every
        # call in flight waits: load what this batch will use now, in threads.
        inferrer = scope.runtime.inferrer if spec.infers_kind else None
        await warm_local(inferrer, e5=False, tokenizer=scope.budget.caps_spend)
    with frozen_heap():
        return await _run_items(scope, spec, items, emit, slot, concurrency, pool)


async def _run_items(
    scope: Scope,
    spec: TaskSpec,
    items: Iterable[tuple[int, Item]],
    emit: Emit,
    slot: Slot,
    concurrency: int,
    pool: WorkerPool | None,
) -> BudgetExceeded | None:
    stopped: list[BudgetExceeded] = []
    sem = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()

    async def one(seq: int, item: Item, task: Task | None) -> None:
        try:
            try:
                r = await item_row(scope, spec, item, task)
            except BudgetExceeded:
                if pool is None or not pool.holds_grants:
                    raise
                # Workers still hold grants on this budget: wait for them to give back what is left.
                await pool.settled()
                r = await item_row(scope, spec, item, task)
        except BudgetExceeded as exc:
            stopped.append(exc)
            return
        finally:
            sem.release()
        emit([(seq, r)])

    def start(seq: int, item: Item, task: Task | None) -> None:
        t = asyncio.create_task(one(seq, item, task))
        pending.add(t)
        t.add_done_callback(pending.discard)

    if pool is not None:

        def from_workers(rows: list[tuple[int, dict[str, Any]]]) -> None:
            emit(rows)
            for _ in rows:
                sem.release()

        pool.on_rows = from_workers
        pool.on_unrun = lambda unrun: [start(seq, item, task) for seq, item, task in unrun]
        await pool.start()

    def halted() -> bool:  # the budget refused, or a worker died holding calls
        return bool(stopped) or (pool is not None and pool.failure is not None)

    try:
        for block in blocks(items, _TASK_BLOCK):
            tasks = item_tasks(scope, spec, [it for _, it in block])
            for (seq, item), task in zip(block, tasks, strict=True):
                await slot(seq)
                await sem.acquire()
                if halted():
                    sem.release()
                    break
                if pool is not None and (worker := pool.take()) is not None:
                    pool.send(worker, seq, item, task)
                else:
                    start(seq, item, task)
            if halted():
                break
        if pool is not None:
            await pool.settled()
        while pending:  # items a worker gave back can start while earlier ones finish
            await asyncio.gather(*list(pending))
    except BaseException:
        if pool is not None:  # interrupted: the workers stop at once (what they finished is recorded)
            await pool.close(wait=False)
        raise
    finally:
        for t in pending:
            t.cancel()
    if pool is not None:
        await pool.close()
        pool.raise_failure()
    return stopped[0] if stopped else None
