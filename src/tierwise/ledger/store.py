"""The Ledger: append-only records of runs, calls and steps, written by a background thread.

Callers (often an asyncio event loop) only enqueue a record, which costs about a microsecond; one
writer thread turns the queue into batched inserts, one transaction per batch. ``flush``/``aflush``
return once everything enqueued before them is committed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from datetime import datetime
from queue import Empty, SimpleQueue
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection

from tierwise.errors import InputError, LedgerError
from tierwise.ledger import circuits, leases, queries, schema
from tierwise.ledger.dbapi import SqliteInsert
from tierwise.ledger.intents import IntentWriter
from tierwise.ledger.queries import SpendKey
from tierwise.ledger.records import CallRecord, RunRecord, StepRecord, utcnow
from tierwise.ledger.redact import redact, redact_obj

log = logging.getLogger("tierwise.ledger")


# Queue operations. Items are (op, payload) tuples: the cheapest thing to build on the caller's side.
_RUN, _FINISH, _CALL, _STEP, _FLUSH, _STOP = range(6)
_Item = tuple[int, Any]
# Backoff 0.25 s doubling: a batch survives ~8 s of database outage (a PostgreSQL restart).
_BATCH_ATTEMPTS = 6

_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))
_CALL_FIELDS = tuple(f.name for f in dataclasses.fields(CallRecord))
_CALLS = SqliteInsert(schema.calls, _CALL_FIELDS)
_STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepRecord))


def _redact(text: str | None) -> str | None:
    return None if text is None else redact(text)


class Ledger:
    """Runs, calls and steps in SQLite (a path or ``sqlite:///...``) or PostgreSQL (``postgresql://...``).

    Writes are enqueued and committed in batches by a background thread; call ``flush``/``aflush``
    when you need them durable, and ``close`` (or use ``with``) when done. Reads flush first, so a
    ledger always reads its own writes.
    """

    def __init__(
        self,
        url: str,
        *,
        store_prompts: bool = False,
        flush_interval_s: float = 0.05,
        batch_size: int = 256,
    ) -> None:
        if flush_interval_s < 0 or batch_size < 1:
            raise InputError(
                f"flush_interval_s={flush_interval_s} and batch_size={batch_size}: "
                "need flush_interval_s >= 0 and batch_size >= 1"
            )
        self.url: URL = schema.normalize_url(url)
        self.store_prompts = store_prompts
        self._flush_interval_s = flush_interval_s
        self._batch_size = batch_size
        try:
            self._engine = schema.create_engine(self.url)
        except (sa.exc.SQLAlchemyError, OSError, ImportError) as exc:
            raise schema.open_error(self.url, exc) from exc
        try:
            schema.create_tables(self._engine)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            self._engine.dispose()
            raise schema.open_error(self.url, exc) from exc
        # An in-memory SQLite database is one connection shared by every thread: take turns.
        is_sqlite = self._sqlite = self.url.get_backend_name() == "sqlite"
        in_memory = is_sqlite and schema.sqlite_path(self.url) is None
        # Leases and write-ahead intents are written synchronously on every call: on a SQLite file they
        # get their own engine with synchronous=NORMAL (durable across a crash, ~40x cheaper than FULL).
        self._sync_engine = (
            schema.create_engine(self.url, synchronous="NORMAL")
            if is_sqlite and not in_memory
            else self._engine
        )
        try:
            leases.probe_writable(self._sync_engine)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            self._engine.dispose()
            raise schema.open_error(self.url, exc, writing=True) from exc
        self._db_lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if in_memory else contextlib.nullcontext()
        )
        # SQLite has one writer at a time: this process's writers (records, intents, leases) take turns
        # on a lock here rather than meet in SQLite's busy handler, which sleeps 1-100 ms per collision.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            self._db_lock if in_memory else threading.Lock() if is_sqlite else contextlib.nullcontext()
        )
        self._upsert_run = self._upsert_statement()
        self._intents = IntentWriter(self._sync_engine, self._write_lock, inline=is_sqlite and not in_memory)
        self._queue: SimpleQueue[_Item] = SimpleQueue()
        self._error: LedgerError | None = None
        self._error_lock = threading.Lock()
        self._wake = threading.Event()
        # Flush/stop markers still queued: while any is, the writer must not sit out flush_interval_s
        # (a marker behind more than one batch would otherwise wait a full interval per batch).
        self._marks = 0
        self._marks_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._writer, name="tierwise-ledger-writer", daemon=True)
        self._thread.start()
        # A forgotten close() must not lose the tail of the queue when the interpreter exits.
        self._atexit = _closer(weakref.ref(self))
        atexit.register(self._atexit)

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> Ledger:
        return cls(url, **kwargs)

    # ---- writing (enqueue only; never blocks on the database) ----

    def start_run(self, rec: RunRecord) -> None:
        """Record a run. Starting an existing run id again (resume) marks it running again."""
        self._put((_RUN, rec))

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self._put((_FINISH, (run_id, status, error, utcnow())))

    def record_call(self, rec: CallRecord) -> None:
        self._put((_CALL, rec))

    def record_step(self, rec: StepRecord, *, durable: bool = False) -> None:
        """Record a step; with ``durable=True`` return only once it is committed (blocks)."""
        self._put((_STEP, rec))
        if durable:
            self.flush()

    async def record_step_durable(self, rec: StepRecord) -> None:
        """Record a step and return once it is committed: resume trusts only durable steps."""
        self._put((_STEP, rec))
        await self.aflush()

    def _put(self, item: _Item) -> None:
        if self._closed:
            raise LedgerError(f"the ledger at {self.display_url} is closed; open a new Ledger to write")
        self._queue.put(item)

    def _signal(self, marker: _Item) -> None:
        with self._marks_lock:
            self._marks += 1
        self._queue.put(marker)
        self._wake.set()

    def flush(self) -> None:
        """Block until everything enqueued so far is committed; raise the first write error since."""
        if self._closed:
            self._raise_pending()
            return
        done = threading.Event()
        self._signal((_FLUSH, done.set))
        while not done.wait(1.0):
            if not self._thread.is_alive():
                raise LedgerError(f"the ledger writer thread for {self.display_url} stopped unexpectedly")
        self._raise_pending()

    async def aflush(self) -> None:
        """``flush`` for asyncio: waits without blocking the event loop."""
        if self._closed:
            self._raise_pending()
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        self._signal((_FLUSH, lambda: loop.call_soon_threadsafe(resolve)))
        await future
        self._raise_pending()

    def close(self) -> None:
        """Commit everything enqueued, stop the writer and release connections."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        self._signal((_STOP, None))
        self._thread.join()
        self._intents.close()
        self._engine.dispose()
        if self._sync_engine is not self._engine:
            self._sync_engine.dispose()
        self._raise_pending()

    async def aclose(self) -> None:
        try:
            await self.aflush()
        finally:
            self.close()  # quick now: the queue is (nearly) empty

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def display_url(self) -> str:
        return schema.display_url(self.url)

    # ---- leases and write-ahead intents (synchronous) ----

    def acquire_run(self, run_id: str) -> None:
        """Hold ``run_id`` for this process; RunLocked if another live process holds it."""
        with self._write_lock:
            leases.acquire(self._sync_engine, run_id)

    def release_run(self, run_id: str) -> None:
        with self._write_lock:
            leases.release(self._sync_engine, run_id)

    async def intend(self, row: dict[str, Any]) -> None:
        """Before a request is sent: the call that will be paid, in the database before it leaves,
        committed together with the intents of other calls in flight (see ``ledger/intents.py``)."""
        await self._intents.write(row)

    def record_circuit(self, model: str, state: str, failures: int, why: str) -> None:
        """A model's circuit breaker changed state; kept (one row per model) for the dashboard and CLI."""
        try:
            with self._write_lock:
                circuits.record(self._sync_engine, model, state, failures, why)
        except sa.exc.SQLAlchemyError as exc:  # a breaker must work even when this write does not
            log.warning("could not record the circuit of %s: %s", model, exc)

    def circuits(self) -> list[dict[str, Any]]:
        with self._db_lock:
            return circuits.read(self._sync_engine)

    def settle_intents(self, run_id: str) -> list[CallRecord]:
        """Calls of ``run_id`` that were sent and never recorded (a crash): recorded now as interrupted."""
        self.flush()
        with self._write_lock:
            return leases.settle_intents(self._sync_engine, run_id, self._call_row)

    # ---- the writer thread ----

    def _writer(self) -> None:
        queue, batch_size, interval = self._queue, self._batch_size, self._flush_interval_s
        while True:
            item = queue.get()  # idle: sleep until something arrives
            if item[0] < _FLUSH and queue.qsize() < batch_size and not self._marks:
                # Gather for flush_interval_s so a steady trickle becomes few transactions. Waiting on an
                # event rather than on queue.get(timeout) matters: a blocked get wakes this thread (and
                # takes the GIL from the event loop) on every single record; a flush or stop sets it.
                self._wake.wait(interval)
            self._wake.clear()
            batch: list[_Item] = [item]
            while len(batch) < batch_size:
                try:
                    batch.append(queue.get_nowait())
                except Empty:
                    break
            try:
                self._write(batch)
            except Exception as exc:  # never let the thread die: flush() would wait forever
                self._fail(exc, "the ledger writer failed")
            for op, payload in batch:
                if op >= _FLUSH:
                    with self._marks_lock:
                        self._marks -= 1
                if op == _FLUSH:
                    # RuntimeError: the waiting event loop is already closed; nobody is waiting.
                    with contextlib.suppress(RuntimeError):
                        payload()
                elif op == _STOP:
                    return

    def _write(self, batch: list[_Item]) -> None:
        records = [item for item in batch if item[0] < _FLUSH]
        if not records:
            return
        for attempt in range(_BATCH_ATTEMPTS):
            try:
                self._transaction(records)
                return
            except sa.exc.OperationalError as exc:
                # Locked past the busy timeout, connection lost, disk full: the batch as a whole
                # waits and retries; splitting it would only repeat the failure per record.
                if attempt == _BATCH_ATTEMPTS - 1:
                    self._fail(exc, f"could not write {len(records)} records")
                    return
                time.sleep(0.25 * 2**attempt)
            except Exception:
                break
        # One bad record (a duplicate id, an unknown run) must not cost the rest of the batch:
        # retry each in its own transaction; the failures are kept for the next flush.
        for record in records:
            try:
                self._transaction([record])
            except Exception as exc:
                self._fail(exc, f"could not write {_describe(record)}")

    def _transaction(self, records: list[_Item]) -> None:
        # Rows are built (and redacted) before the write lock is taken: under a batch the lock is what
        # the calls' intents wait for, so it covers the statements only.
        ops, call_rows, step_rows = self._rows(records)
        # SQLite: the call rows' values bound here too, for the DBAPI's executemany (ledger/dbapi.py).
        values = _CALLS.values(self._engine.dialect, call_rows) if self._sqlite and call_rows else None
        with self._write_lock, self._engine.begin() as conn:
            self._apply(conn, ops, call_rows, step_rows, values)

    def _rows(
        self, records: Iterable[_Item]
    ) -> tuple[list[_Item], list[dict[str, Any]], list[dict[str, Any]]]:
        ops: list[_Item] = []
        call_rows: list[dict[str, Any]] = []
        step_rows: list[dict[str, Any]] = []
        for op, payload in records:
            if op == _CALL:
                call_rows.append(self._call_row(payload))
            elif op == _STEP:
                step_rows.append(_step_row(payload))
            elif op == _RUN:
                ops.append((op, _run_row(payload)))
            elif op == _FINISH:
                ops.append((op, payload))
        return ops, call_rows, step_rows

    def _apply(
        self,
        conn: Connection,
        ops: list[_Item],
        call_rows: list[dict[str, Any]],
        step_rows: list[dict[str, Any]],
        call_values: list[tuple[Any, ...]] | None = None,
    ) -> None:
        for op, payload in ops:  # runs are rare and order-sensitive (start, finish, resume): one by one
            if op == _RUN:
                conn.execute(self._upsert_run, payload)
            else:
                run_id, status, error, ended_at = payload
                result = conn.execute(
                    schema.runs.update()
                    .where(schema.runs.c.id == run_id)
                    .values(status=status, error=_redact(error), ended_at=ended_at)
                )
                if result.rowcount == 0:
                    raise LedgerError(f"finish_run({run_id!r}): no such run; call start_run first")
        if call_rows:
            if call_values is not None:
                conn.exec_driver_sql(_CALLS.sql, call_values)
            else:
                conn.execute(schema.calls.insert(), call_rows)
            # The call is recorded: its write-ahead intent goes in the same transaction.
            done = [r["metadata"].get("intent_id") for r in call_rows if r["metadata"]]
            leases.clear_intents(conn, [i for i in done if i])
        if step_rows:
            conn.execute(schema.steps.insert(), step_rows)

    def _upsert_statement(self) -> sa.Executable:
        backend = self.url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            return schema.runs.insert()
        insert = sqlite.insert if backend == "sqlite" else postgresql.insert
        stmt = insert(schema.runs)
        kept = ("kind", "label", "status", "budget_usd", "ended_at", "error", "metadata")
        return stmt.on_conflict_do_update(
            index_elements=["id"], set_={name: stmt.excluded[name] for name in kept}
        )

    def _call_row(self, rec: CallRecord) -> dict[str, Any]:
        row = {name: getattr(rec, name) for name in _CALL_FIELDS}
        row["reason"] = redact(rec.reason)
        row["error"] = _redact(rec.error)
        row["output"] = _redact(rec.output)
        row["prompt"] = _redact(rec.prompt) if self.store_prompts else None
        row["metadata"] = redact_obj(rec.metadata)
        return row

    def _fail(self, exc: BaseException, what: str) -> None:
        log.error("%s in the ledger at %s: %s", what, self.display_url, getattr(exc, "orig", None) or exc)
        with self._error_lock:
            if self._error is None:
                # The driver's message ("UNIQUE constraint failed: calls.id"), not SQLAlchemy's,
                # which quotes the whole statement with its parameters.
                cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
                detail = cause if isinstance(cause, LedgerError) else f"{type(cause).__name__}: {cause}"
                self._error = LedgerError(f"{what} in the ledger at {self.display_url}: {detail}")
                self._error.__cause__ = exc

    def _raise_pending(self) -> None:
        with self._error_lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    # ---- reading (sync; for the CLI, the dashboard and resume) ----

    def _select(self, stmt: sa.Select[Any]) -> list[sa.RowMapping]:
        self.flush()  # read your own writes
        with self._db_lock, self._engine.connect() as conn:
            return list(conn.execute(stmt).mappings())

    def runs(self, limit: int = 50) -> list[RunRecord]:
        """The most recent runs, newest first."""
        t = schema.runs
        rows = self._select(sa.select(t).order_by(t.c.started_at.desc(), t.c.id.desc()).limit(limit))
        return self._live([queries.to_record(RunRecord, row) for row in rows])

    def _live(self, records: list[RunRecord]) -> list[RunRecord]:
        """A run recorded as running whose holding process is gone (kill -9) is interrupted."""
        running = [r.id for r in records if r.status == "running"]
        if not running:
            return records
        with self._db_lock:
            held = leases.holders(self._sync_engine, running)
        out = []
        for r in records:
            h = held.get(r.id)
            if r.status == "running" and h is not None and h.alive is False:
                why = f"its process ({h}) ended without finishing it; resume it"
                r = dataclasses.replace(r, status="interrupted", error=r.error or why)
            out.append(r)
        return out

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or with an id starting with it when only one does."""
        t = schema.runs
        if not run_id:
            raise LedgerError("get_run needs a run id (or the first characters of one); see `tierwise runs`")
        rows = self._select(sa.select(t).where(t.c.id == run_id))
        if not rows:
            prefix = t.c.id.startswith(run_id, autoescape=True)
            rows = self._select(sa.select(t).where(prefix).order_by(t.c.started_at.desc()).limit(6))
        if not rows:
            raise LedgerError(
                f"no run with id {run_id!r} in the ledger at {self.display_url}; "
                "list runs with `tierwise runs`"
            )
        if len(rows) > 1:
            ids = ", ".join(str(row["id"]) for row in rows[:5])
            raise LedgerError(f"run id {run_id!r} is ambiguous: it starts {ids}, ...; give more characters")
        return self._live([queries.to_record(RunRecord, rows[0])])[0]

    def calls(
        self, run_id: str | None = None, limit: int | None = None, *, operation: str | None = None
    ) -> list[CallRecord]:
        """Calls in the order they were made; with ``limit``, the most recent ``limit`` of them."""
        t = schema.calls
        stmt = sa.select(t)
        if run_id is not None:
            stmt = stmt.where(t.c.run_id == run_id)
        if operation is not None:
            stmt = stmt.where(t.c.operation == operation)
        if limit is None:
            rows = self._select(stmt.order_by(t.c.created_at, t.c.seq))
        else:
            rows = self._select(stmt.order_by(t.c.created_at.desc(), t.c.seq.desc()).limit(limit))
            rows.reverse()
        return [queries.to_record(CallRecord, row) for row in rows]

    def steps(self, run_id: str) -> list[StepRecord]:
        """The latest record of each step of a run, in the order of those records."""
        t = schema.steps
        rows = self._select(sa.select(t).where(t.c.run_id == run_id).order_by(t.c.seq))
        latest: dict[str, StepRecord] = {}
        for row in rows:
            latest.pop(row["step_id"], None)  # re-insert so the order follows the latest record
            latest[row["step_id"]] = queries.to_record(StepRecord, row)
        return list(latest.values())

    def finished_steps(self, run_id: str) -> dict[str, StepRecord]:
        """Steps whose latest durable record says ok: what resume skips."""
        return {s.step_id: s for s in self.steps(run_id) if s.status == "ok"}

    def spend(
        self, by: SpendKey, *, run_id: str | None = None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Calls, tokens and cost grouped by tier, model, run or task kind; most expensive first.

        Each row: key, calls, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens,
        cost_usd (None only if every cost was unknown), notional (any call had a notional price).
        """
        return queries.spend_rows(self._select(queries.spend_select(by, run_id, since)))

    def run_summary(self, run_id: str) -> dict[str, Any]:
        """One run at a glance (JSON-ready): cost in total, per tier and per step, tokens, statuses."""
        run = self.get_run(run_id)
        rows = self._select(queries.summary_select(run.id))
        return queries.summarize(run, rows, self.steps(run.id))


def _run_row(rec: RunRecord) -> dict[str, Any]:
    row = {name: getattr(rec, name) for name in _RUN_FIELDS}
    row["label"] = redact(rec.label)
    row["error"] = _redact(rec.error)
    row["metadata"] = redact_obj(rec.metadata)  # an orchestration's goal, a system's inputs
    return row


def _step_row(rec: StepRecord) -> dict[str, Any]:
    row = {name: getattr(rec, name) for name in _STEP_FIELDS}
    row["output"] = _redact(rec.output)
    row["error"] = _redact(rec.error)
    row["metadata"] = redact_obj(rec.metadata)  # __plan__ keeps the goal here, for resume
    return row


def _describe(item: _Item) -> str:
    op, payload = item
    if op == _FINISH:
        return f"finish_run({payload[0]!r})"
    kind = {_RUN: "run", _CALL: "call", _STEP: "step"}.get(op, "record")
    ident = getattr(payload, "id", None) or getattr(payload, "step_id", None)
    return f"{kind} {ident!r}"


def _closer(ref: weakref.ReferenceType[Ledger]) -> Callable[[], None]:
    def close_at_exit() -> None:
        ledger = ref()
        if ledger is not None:
            try:
                ledger.close()
            except LedgerError as exc:
                log.error("%s", exc)

    return close_at_exit
