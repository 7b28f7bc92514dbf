"""A local batch's worker process (``python -m tierwise.scale.worker FD``): its own session and event loop
running the batch's items through the same one path, so the SDK's per-call CPU, which bounds one
process, is spread over the machine's cores.

It talks to the batch over the socket ``FD`` (``wire`` frames). The batch sends ``Setup``, then
``("items", [(seq, item, task), ...])`` and finally ``("stop",)``; the worker answers ``("ready",)``,
then ``("rows", rows, refused, spend)`` as calls finish and ``("done",)`` when all have. Its budget is
the grant it was given: a call the grant cannot cover is sent back unrun (``refused``), for the batch to
run under its own budget or stop. When the batch goes away (its end of the socket closes) the worker
stops at once: a finished call is in the ledger, and the batch's resume finds the rest.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tierwise.config import Config
from tierwise.core import Task
from tierwise.errors import BudgetExceeded
from tierwise.runtime.budget import Budget, Caps
from tierwise.runtime.heap import frozen_heap
from tierwise.runtime.scope import FanOut, Scope
from tierwise.runtime.warm import warm_local
from tierwise.scale.inputs import Item
from tierwise.scale.tasks import TaskSpec
from tierwise.scale.wire import read_frame, write_frame
from tierwise.scale.work import item_row

if TYPE_CHECKING:
    from tierwise.session import Session


@dataclass(frozen=True)
class Setup:
    config: Config
    ledger_url: str
    run_id: str
    spec: TaskSpec
    grant_usd: float | None  # None: no money cap applies
    warm_kinds: bool  # items may reach the runtime without a kind: load the classifier before "ready"
    concurrency: int  # the most calls the batch gives this worker at once: its run's fan-out


Spend = tuple[float, int, int]  # usd, tokens, calls since the last report


class _Reports:
    """Rows, refusals and spend, sent once per turn of the loop rather than once per call."""

    def __init__(self, writer: asyncio.StreamWriter, budget: Budget) -> None:
        self.writer, self.budget = writer, budget
        self.rows: list[tuple[int, dict[str, Any]]] = []
        self.refused: list[tuple[int, Item, Task | None]] = []
        self.sent: Spend = (0.0, 0, 0)
        self.scheduled = False

    def add(
        self, row: tuple[int, dict[str, Any]] | None, refused: tuple[int, Item, Task | None] | None
    ) -> None:
        if row is not None:
            self.rows.append(row)
        if refused is not None:
            self.refused.append(refused)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if not (self.rows or self.refused):
            return
        b = self.budget
        now: Spend = (b.spent_usd, b.spent_tokens, b.calls)
        spend = (now[0] - self.sent[0], now[1] - self.sent[1], now[2] - self.sent[2])
        self.sent = now
        write_frame(self.writer, ("rows", self.rows, self.refused, spend))
        self.rows, self.refused = [], []


async def serve(sock: socket.socket) -> None:
    from tierwise.session import Session  # the worker is a process of its own: it opens a session

    reader, writer = await asyncio.open_unix_connection(sock=sock)
    setup: Setup = await read_frame(reader)
    session = Session(setup.config, ledger_url=setup.ledger_url)
    session.open()
    try:
        await _serve(reader, writer, session, setup)
    finally:
        await session.aclose()


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session, setup: Setup
) -> None:
    assert session.runtime is not None
    budget = Budget(Caps(usd=setup.grant_usd)) if setup.grant_usd is not None else Budget()
    # The batch's run, recorded into (not opened or finished: the batch does that).
    scope = Scope(
        id=setup.run_id, kind="batch", budget=budget, runtime=session.runtime, steps=session.ledger,
        fan_out=FanOut.uniform(setup.concurrency),
    )  # fmt: skip
    await warm_local(
        session.runtime.inferrer if setup.warm_kinds else None, e5=False, tokenizer=budget.caps_spend
    )
    write_frame(writer, ("ready",))
    with frozen_heap():
        await _serve_items(reader, writer, session, setup, scope, budget)


async def _serve_items(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    session: Session,
    setup: Setup,
    scope: Scope,
    budget: Budget,
) -> None:
    reports = _Reports(writer, budget)
    pending: set[asyncio.Task[None]] = set()

    async def one(seq: int, item: Item, task: Task | None) -> None:
        try:
            r = await item_row(scope, setup.spec, item, task)
        except BudgetExceeded:
            reports.add(None, (seq, item, task))
            return
        reports.add((seq, r), None)

    try:
        while (msg := await read_frame(reader))[0] == "items":
            for seq, item, task in msg[1]:
                t = asyncio.create_task(one(seq, item, task))
                pending.add(t)
                t.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        reports.flush()
        if session.ledger is not None:
            await session.ledger.aflush()
        write_frame(writer, ("done",))
        await writer.drain()
    finally:
        for t in pending:
            t.cancel()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m tierwise.scale.worker FD (a local batch starts it)", file=sys.stderr)
        return 2
    # Ctrl-C reaches the whole process group: the batch decides what happens, and closes the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    try:
        asyncio.run(serve(sock))
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0  # the batch has gone: what finished is in the ledger
    except Exception as exc:  # the batch quotes this one line (it may name a config or ledger problem)
        from tierwise.ledger.redact import redact

        print(redact(f"{type(exc).__name__}: {exc}").replace("\n", " "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
