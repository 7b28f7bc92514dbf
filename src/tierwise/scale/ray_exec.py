"""The Ray executor: blocks of items run on Ray actors, each holding a session and running the same local
executor (so the same one path) over its block; the cluster's budget is one ``BudgetBank`` actor.

Several processes write the ledger at once, so it must be PostgreSQL; a worker records into the driver's
run (the same run id) without opening or finishing it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

from tierwise.config import Config
from tierwise.errors import BudgetExceeded, InputError
from tierwise.runtime.budget import Budget, Caps
from tierwise.runtime.scope import Scope
from tierwise.scale.budget_actor import BudgetBank
from tierwise.scale.inputs import Item
from tierwise.scale.local import Emit, Slot, blocks, run_local
from tierwise.scale.tasks import TaskSpec

CONNECT_TIMEOUT_S = 5.0


def check_ledger(url: str) -> None:
    if not url.startswith(("postgresql", "postgres://")):
        raise InputError(
            "the Ray executor needs a ledger several processes can write: set [ledger] url to a PostgreSQL "
            "URL (postgresql://...); SQLite takes one writer"
        )


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("the Ray executor needs Ray: pip install 'tierwise[scale]'") from None
    return ray


def _answers(address: str) -> bool:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address {address!r} is not HOST:PORT: e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """Ray, connected: to ``address`` (checked first, so a dead address is one line, not a long hang), or a
    local Ray started here."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address:
        if address != "auto" and not _answers(address):
            raise InputError(
                f"Ray at {address!r} does not answer: start the cluster (`ray start --head`) "
                "or fix --ray-address"
            )
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return ray


class BlockWorker:
    """A Ray actor: one session per worker process, one block at a time through the local executor."""

    def __init__(self, config: Config, ledger_url: str, run_id: str) -> None:
        self.config, self.ledger_url, self.run_id = config, ledger_url, run_id
        self.session: Any = None

    async def run_block(
        self,
        spec: TaskSpec,
        items: list[tuple[int, Item]],
        bank: Any,
        want_usd: float | None,
        concurrency: int,
    ) -> tuple[list[tuple[int, dict[str, Any]]], str | None]:
        from tierwise.session import Session

        if self.session is None:
            self.session = Session(self.config, ledger_url=self.ledger_url)
            self.session.open()
        grant = None if want_usd is None else await bank.reserve.remote(want_usd)
        if grant is not None and grant <= 0:
            return [], "the batch budget is used up"
        scope = Scope(
            id=self.run_id,
            kind="batch",
            budget=Budget(Caps(usd=grant)),
            runtime=self.session.runtime,
            steps=self.session.ledger,
        )
        rows: list[tuple[int, dict[str, Any]]] = []
        try:
            stopped = await run_local(scope, spec, items, rows.extend, concurrency=concurrency)
        finally:
            await self.session.ledger.aflush()
            await bank.settle.remote(grant, scope.budget.spent_usd)
        return rows, (str(stopped) if stopped else None)


async def run_ray(
    config: Config,
    ledger_url: str,
    run_id: str,
    spec: TaskSpec,
    items: Iterable[tuple[int, Item]],
    emit: Emit,
    *,
    slot: Slot,
    budget_usd: float | None,
    spent_usd: float,
    address: str | None = None,
    concurrency: int = 50,
    block_size: int = 256,
    num_cpus: int | None = None,
) -> BudgetExceeded | None:
    check_ledger(ledger_url)
    ray = connect(address, num_cpus)
    n = max(1, int(ray.cluster_resources().get("CPU", 1)))
    bank = ray.remote(BudgetBank).remote(budget_usd, spent_usd)
    worker_cls = ray.remote(num_cpus=1)(BlockWorker)
    workers = [worker_cls.remote(config, ledger_url, run_id) for _ in range(n)]
    idle: asyncio.Queue[Any] = asyncio.Queue()
    for w in workers:
        idle.put_nowait(w)
    # A worker takes at most its share of the cap at once: grants outstanding never exceed it together.
    want = None if budget_usd is None else max(budget_usd - spent_usd, 0.0) / n
    per_worker = max(1, concurrency // n)
    size = block_size if spec.per_block else max(per_worker * 2, 16)
    stopped: list[str] = []
    pending: set[asyncio.Task[None]] = set()

    async def one(worker: Any, block: list[tuple[int, Item]]) -> None:
        try:
            rows, why = await worker.run_block.remote(spec, block, bank, want, per_worker)
        finally:
            idle.put_nowait(worker)
        emit(rows)
        if why:
            stopped.append(why)

    try:
        for block in blocks(items, size):
            await slot(block[-1][0])
            worker = await idle.get()
            if stopped:
                idle.put_nowait(worker)
                break
            t = asyncio.create_task(one(worker, block))
            pending.add(t)
            t.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
    finally:
        for t in pending:
            t.cancel()
        for w in workers:
            ray.kill(w)
        ray.kill(bank)
    return BudgetExceeded(f"{stopped[0]}: raise --budget and run the same command again") if stopped else None
