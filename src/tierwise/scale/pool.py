"""Worker processes for a local batch (``--workers N``): the batch process keeps reading, routing kinds,
writing rows and its share of the calls; each worker (``scale.worker``) runs the rest of the calls through
its own session, so the SDK's per-call CPU, which bounds one Python process, uses the other cores.

One budget still holds. A worker spends from a *grant*: a reservation taken on the batch's budget (its
share of the tightest money cap's headroom), drawn down as the worker reports what its calls cost, the rest
released when it is done. The first refusal anywhere (a worker's grant or the batch's own budget) winds the
workers down: they finish what they hold and give back their grants, and the batch process runs the rest
alone under the one budget, stopping where it refuses. Workers join when they are ready (a second or so to
start); until then, and when every worker is full, the batch process takes the call itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from tierwise.config import Config
from tierwise.core import Task
from tierwise.errors import BudgetExceeded, InputError, TierwiseError
from tierwise.ledger.redact import redact
from tierwise.runtime.budget import Budget, Reservation
from tierwise.scale.inputs import Item
from tierwise.scale.tasks import TaskSpec
from tierwise.scale.wire import read_frame, write_frame
from tierwise.scale.worker import Setup

Rows = list[tuple[int, dict[str, Any]]]
Unrun = list[tuple[int, Item, Task | None]]
log = logging.getLogger("tierwise.scale")
STOP_WAIT_S = 30.0  # a worker asked to stop gets this long to finish the calls it holds


class WorkerExited(TierwiseError):
    """A worker process ended before it answered for the calls it held."""


def check_workers(ledger_url: str, budget: Budget) -> None:
    """What more than one process needs of the ledger and the budget, refused in one line each (the
    count itself is ``BatchOptions``'s to check)."""
    if ":memory:" in ledger_url or ledger_url.rstrip("/") in ("sqlite:", "sqlite://"):
        raise InputError(
            "--workers needs a ledger other processes can open: an in-memory SQLite ledger is this "
            "process's alone; set [ledger] url to a file or PostgreSQL, or use --workers 1"
        )
    if budget.caps_counts:
        raise InputError(
            "--workers splits a budget in money only, and a token or call cap applies to this run: "
            "use --workers 1, or cap the run in USD"
        )


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    writer: asyncio.StreamWriter | None = None
    grant: Reservation | None = None
    ready: bool = False
    open: bool = True  # takes new items
    held: dict[int, tuple[Item, Task | None]] = field(default_factory=dict)  # sent, not yet answered
    outbox: Unrun = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    reader_task: asyncio.Task[None] | None = None

    async def why_gone(self) -> str:
        """Its exit code and the last line it wrote to stderr (redacted), once it has exited."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.proc.wait, 2.0)
        code = self.proc.poll()
        with contextlib.suppress(OSError):
            self.stderr.seek(0)
            last = [ln for ln in self.stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            if last:
                return f"exit code {code}: {redact(last[-1])[:300]}"
        return f"exit code {code}"


class WorkerPool:
    """``n`` worker processes over one batch run. The executor sets ``on_rows`` (the workers' rows) and
    ``on_unrun`` (items a worker gave back unrun, its grant used up; each still holds its slot)."""

    def __init__(
        self,
        n: int,
        *,
        config: Config,
        ledger_url: str,
        run_id: str,
        spec: TaskSpec,
        budget: Budget,
        concurrency: int,
    ) -> None:
        self.n, self.budget = n, budget
        self.base = (config, ledger_url, run_id, spec)
        # Each process (the batch's own included) holds an equal share of the calls in flight.
        self.share = max(1, -(-concurrency // (n + 1)))
        self.on_rows: Callable[[Rows], None] = lambda rows: None
        self.on_unrun: Callable[[Unrun], None] = lambda unrun: None
        self.workers: list[_Worker] = []
        self.failure: str | None = None
        self.rows_done = 0  # rows the workers made
        self.winding_down = False

    async def start(self) -> None:
        """Start the processes; each joins (``take`` offers it calls) once its session is open."""
        config, ledger_url, run_id, spec = self.base
        headroom = self.budget.headroom_usd()
        for _ in range(self.n):
            grant_usd = None if headroom is None else headroom / (self.n + 1)
            if grant_usd is not None and grant_usd <= 0:
                break
            ours, theirs = socket.socketpair()
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 - the worker's, closed in close()
            proc = subprocess.Popen(
                [sys.executable, "-m", "tierwise.scale.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            theirs.close()
            w = _Worker(proc, stderr)
            try:
                w.grant = self.budget.reserve(grant_usd, 0, what="a batch worker's grant")
            except BudgetExceeded:  # already overrun: no worker; the batch's own call meets the refusal
                proc.kill()
                ours.close()
                stderr.close()
                break
            reader, w.writer = await asyncio.open_unix_connection(sock=ours)
            warm = spec.infers_kind and spec.tier is None
            write_frame(w.writer, Setup(config, ledger_url, run_id, spec, grant_usd, warm, self.share))
            w.reader_task = asyncio.create_task(self._listen(w, reader))
            self.workers.append(w)

    @property
    def holds_grants(self) -> bool:
        """A worker still runs, so part of the budget may still be out on its grant."""
        return any(not w.done.is_set() for w in self.workers)

    def take(self) -> _Worker | None:
        """A worker with room for one more call, or None (the batch process takes it)."""
        if self.winding_down:
            return None
        best = None
        for w in self.workers:
            room = w.ready and w.open and len(w.held) < self.share
            if room and (best is None or len(w.held) < len(best.held)):
                best = w
        return best

    def send(self, w: _Worker, seq: int, item: Item, task: Task | None) -> None:
        w.held[seq] = (item, task)
        if not w.outbox:
            asyncio.get_running_loop().call_soon(self._post, w)
        w.outbox.append((seq, item, task))

    def _post(self, w: _Worker) -> None:
        if w.outbox and w.writer is not None and not w.writer.is_closing():
            write_frame(w.writer, ("items", w.outbox))
        w.outbox = []

    async def _listen(self, w: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                msg = await read_frame(reader)
                if msg[0] == "rows":
                    _, rows, unrun, (usd, tokens, calls) = msg
                    if w.grant is not None and (usd or tokens or calls):
                        self.budget.draw(w.grant, usd, tokens, calls)
                    for seq, _ in rows:
                        w.held.pop(seq, None)
                    for seq, _, _ in unrun:
                        w.held.pop(seq, None)
                    if rows:
                        self.rows_done += len(rows)
                        self.on_rows(rows)
                    if unrun:
                        self.wind_down()  # a grant is used up: the batch process goes on alone
                        self.on_unrun(unrun)
                elif msg[0] == "ready":
                    w.ready = True
                elif msg[0] == "done":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            if w.held:
                self.failure = self.failure or (
                    f"a batch worker process ended with {len(w.held)} calls unanswered "
                    f"({await w.why_gone()}): run the same command again to resume"
                )
            elif not w.ready:  # it never took a call: the batch process did the work, nothing is lost
                log.warning("a batch worker process did not start (%s)", await w.why_gone())
        finally:
            w.open = False
            if w.grant is not None:
                self.budget.release(w.grant)
            w.done.set()

    def wind_down(self) -> None:
        """No more calls to workers; each finishes what it holds and gives back its grant."""
        self.winding_down = True
        for w in self.workers:
            if w.open:
                w.open = False
                self._post(w)
                if w.writer is not None and not w.writer.is_closing():
                    write_frame(w.writer, ("stop",))

    async def settled(self) -> None:
        """Every worker has answered for its calls and given back its grant (or has gone)."""
        self.wind_down()
        await asyncio.gather(*(w.done.wait() for w in self.workers))

    async def close(self, *, wait: bool = True) -> None:
        """Wind down and wait (bounded) for the workers, then make sure none is left running. Without
        ``wait`` (an interrupted batch) the sockets close at once and each worker stops on its own."""
        try:
            if wait:
                await asyncio.wait_for(self.settled(), STOP_WAIT_S)
        except TimeoutError:
            self.failure = self.failure or "a batch worker process did not stop in time: it was killed"
        finally:
            for w in self.workers:
                if w.writer is not None:
                    w.writer.close()
                if w.reader_task is not None and not w.reader_task.done():
                    w.reader_task.cancel()
                if w.proc.poll() is None:
                    try:
                        await asyncio.wait_for(asyncio.to_thread(w.proc.wait), 5.0)
                    except TimeoutError:
                        w.proc.kill()
                w.stderr.close()

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise WorkerExited(self.failure)
