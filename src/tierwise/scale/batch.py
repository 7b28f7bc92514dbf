"""A batch: a run (``session.run(kind="batch")``) that streams items from a file or an iterable through an
executor (local or Ray) and writes each row as it finishes; the engine of ``tierwise batch`` and of
``Session.batch``.

Resume is the same command again: the output journal and the ledger's row blocks say which items are done;
they are skipped (rows found only in the ledger are written back, not requested again).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tierwise.errors import InputError, LedgerError
from tierwise.runtime.scope import FanOut, Scope
from tierwise.scale.inputs import BadRow, Item, check_input, read_items
from tierwise.scale.local import run_local
from tierwise.scale.outputs import RowWriter, check_output, journal_path
from tierwise.scale.pool import WorkerPool, check_workers
from tierwise.scale.resume import (
    ROWS_STEP,
    Marker,
    batch_key,
    check_same_batch,
    done_rows,
    ledger_rows,
    write_marker,
)
from tierwise.scale.tasks import TaskSpec

if TYPE_CHECKING:
    from tierwise.session import Session

RUN_KIND = "batch"
LEDGER_BLOCK = 256  # rows per ledger step record: resume's second source, without a record per item


@dataclass
class BatchOptions:
    spec: TaskSpec
    field: str = "text"
    id_field: str = "id"
    concurrency: int = 50
    block_size: int = 512
    ordered: bool = False
    strict: bool = False
    budget_usd: float | None = None
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_cpus: int | None = None  # local Ray only: how many CPUs it may use (None: all)
    workers: int = 1  # local only: processes making the per-item calls, this one included

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InputError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.executor not in ("local", "ray"):
            raise InputError(f"unknown executor {self.executor!r}: use local or ray")
        if self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if self.workers > 1 and self.executor != "local":
            raise InputError("--workers is for the local executor; Ray places its own workers: drop one")
        if self.budget_usd is not None and not self.budget_usd > 0:
            raise InputError(f"--budget must be greater than 0, got {self.budget_usd}")

    def fan_out(self) -> FanOut:
        """The run's fan-out is the batch's own bound, ``--concurrency``: the default limits (50 nano
        calls, 64 in all) would cap a wider batch below what it asked for."""
        return FanOut.uniform(self.concurrency)


@dataclass
class BatchReport:
    run_id: str = ""
    done: int = 0  # rows written by this invocation
    failed: int = 0  # of which with an error
    skipped: int = 0  # already done by an earlier attempt
    recovered: int = 0  # found in the ledger only, written back without a request
    by_workers: int = 0  # of ``done``, rows the worker processes made (--workers)
    bad_rows: int = 0
    stopped: str | None = None  # why it stopped early (budget): the rest is left for a resume
    out: str = ""
    bad_examples: list[str] = field(default_factory=list)


class _Recorder:
    """Rows into the ledger in blocks (queued, not waited for): the journal is the primary record."""

    def __init__(self, scope: Scope) -> None:
        self.scope, self.rows, self.n = scope, [], 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(r for r in rows if r.get("error") is None)
        if len(self.rows) >= LEDGER_BLOCK:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.n += 1
        first = self.rows[0]["id"]
        self.scope.record_step(
            f"{ROWS_STEP}{first}:{self.n}:{len(self.rows)}",
            "ok",
            output=json.dumps(self.rows, ensure_ascii=False, default=str),
            metadata={"items": len(self.rows), "cost_usd": sum(r.get("cost_usd") or 0.0 for r in self.rows)},
        )
        self.rows = []


def _count_rows(path: Path) -> int | None:
    """Rows in the input, counted by streaming (an estimate for CSV with multi-line cells), for the ETA."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        n = 0
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                n += chunk.count(b"\n")
        return n - (1 if path.suffix.lower() == ".csv" else 0)
    except Exception:  # only an estimate: no ETA rather than a failed batch
        return None


async def run_file(
    session: Session,
    input_path: Path,
    out: Path,
    opts: BatchOptions,
    *,
    key_extra: dict[str, Any] | None = None,
    on_start: Callable[[Scope, int | None], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
    on_bad: Callable[[BadRow], None] | None = None,
) -> BatchReport:
    """Run (or resume) the batch of ``input_path`` into ``out``. ``on_start(scope, total)``, ``on_rows(n)``
    and ``on_bad(row)`` feed a progress view."""
    check_input(input_path)
    check_output(out)
    ledger_url = session._ledger_url
    if opts.executor == "ray":
        from tierwise.scale.ray_exec import check_ledger

        check_ledger(ledger_url)
    spec = opts.spec
    key = batch_key(
        {
            "input": str(input_path.resolve()),
            "task": spec.task,
            "labels": spec.labels,
            "schema": spec.schema,
            "prompt": spec.prompt,
            "tier": spec.tier,
            "field": opts.field,
            "zero_shot": spec.zero_shot if spec.task == "classify" else None,
            **({"kind": spec.kind} if spec.kind else {}),  # only when set: older batches keep their key
            **(key_extra or {}),
        }
    )
    journal = journal_path(out)
    marker = check_same_batch(out, journal, key)
    resume = False
    if marker is not None:
        assert session.ledger is not None
        try:
            await asyncio.to_thread(session.ledger.get_run, marker.run_id)
            resume = True
        except (LedgerError, InputError, KeyError):
            resume = False  # the ledger was reset: the journal alone says what is done
    done = done_rows(journal)
    report = BatchReport(out=str(out))
    label = f"batch {spec.task} {input_path.name}"[:200]
    async with session.run(
        RUN_KIND,
        label,
        budget_usd=opts.budget_usd,
        run_id=marker.run_id if resume and marker else None,
        resume=resume,
        metadata={"input": str(input_path), "out": str(out), "task": spec.task, "executor": opts.executor},
        fan_out=opts.fan_out(),
    ) as scope:
        report.run_id = scope.id
        write_marker(out, Marker(key, scope.id))
        writer = RowWriter(out, window=max(opts.concurrency * 4, 2 * opts.block_size) if opts.ordered else 0)
        try:
            for r in ledger_rows(scope.finished):
                if str(r["id"]) not in done:  # finished before a kill, never reached the journal
                    writer.write_now(r)
                    done.add(str(r["id"]))
                    report.recovered += 1
            writer.flush()
            total = _count_rows(input_path)
            scope.progress.stage(f"batch {spec.task}", total)
            if on_start is not None:
                on_start(scope, total)
            recorder = _Recorder(scope)

            def items() -> Iterator[tuple[int, Item]]:
                seq = 0
                for it in read_items(input_path, opts.field, opts.id_field):
                    if isinstance(it, BadRow):
                        if opts.strict:
                            raise InputError(
                                f"{input_path}: line {it.line}: {it.why} (--strict stops at a bad row)"
                            )
                        report.bad_rows += 1
                        if len(report.bad_examples) < 20:
                            report.bad_examples.append(f"line {it.line}: {it.why}")
                        if on_bad is not None:
                            on_bad(it)
                        continue
                    if it.id in done:
                        report.skipped += 1
                        continue
                    yield seq, it
                    seq += 1

            def emit(rows: list[tuple[int, dict[str, Any]]]) -> None:
                writer.put_many(rows)
                plain = [r for _, r in rows]
                recorder.add(plain)
                report.done += len(plain)
                report.failed += sum(1 for r in plain if r.get("error") is not None)
                scope.progress.advance(len(plain))
                if on_rows is not None:
                    on_rows(len(plain))

            pool = _pool(session, scope, opts)
            stopped = await _execute(session, scope, spec, items(), emit, writer, opts, pool)
            report.by_workers = pool.rows_done if pool is not None else 0
            recorder.flush()
        finally:
            writer.close()
        nothing = report.done == 0 and report.skipped == 0 and report.recovered == 0
        if nothing and not report.bad_rows and stopped is None:
            raise InputError(f"input {str(input_path)!r} has no rows: pass a file with one item per row")
        if nothing and report.bad_rows:
            raise InputError(
                f"input {str(input_path)!r} has no usable rows ({report.bad_rows} bad; first: "
                f"{report.bad_examples[0]}): check --field and the file's format"
            )
        if stopped is not None:
            report.stopped = str(stopped)
            scope.partial(f"stopped by the budget after {report.done} items: {stopped}")
        elif report.bad_rows:
            scope.partial(f"{report.bad_rows} bad input rows skipped")
    return report


async def _execute(
    session: Session,
    scope: Scope,
    spec: TaskSpec,
    items: Iterable[tuple[int, Item]],
    emit: Any,
    writer: RowWriter,
    opts: BatchOptions,
    pool: WorkerPool | None,
) -> Exception | None:
    if opts.executor == "ray":
        from tierwise.scale.ray_exec import run_ray

        return await run_ray(
            session.config,
            session._ledger_url,
            scope.id,
            spec,
            items,
            emit,
            slot=writer.slot,
            budget_usd=scope.budget.caps.usd,
            spent_usd=scope.budget.spent_usd,
            address=opts.ray_address,
            concurrency=opts.concurrency,
            block_size=opts.block_size,
            num_cpus=opts.ray_cpus,
        )
    return await run_local(
        scope, spec, items, emit, slot=writer.slot, concurrency=opts.concurrency, block_size=opts.block_size,
        pool=pool,
    )  # fmt: skip


def _pool(session: Session, scope: Scope, opts: BatchOptions) -> WorkerPool | None:
    """Worker processes for ``--workers N`` (N - 1 besides this one); per-block work stays here."""
    if opts.workers <= 1 or opts.spec.per_block:
        return None
    check_workers(session._ledger_url, scope.budget)
    return WorkerPool(
        opts.workers - 1,
        config=session.config,
        ledger_url=session._ledger_url,
        run_id=scope.id,
        spec=opts.spec,
        budget=scope.budget,
        concurrency=opts.concurrency,
    )


def as_items(
    items: Iterable[str | dict[str, Any]], field_name: str = "text", id_field: str = "id"
) -> Iterator[tuple[int, Item]]:
    """Python values as items: a string is the text, a dict has ``field_name`` (and maybe ``id``)."""
    for n, value in enumerate(items):
        if isinstance(value, str):
            data: dict[str, Any] = {field_name: value}
        elif isinstance(value, dict):
            data = value
        else:
            raise InputError(f"item {n}: expected a string or a dict, got {type(value).__name__}")
        text = data.get(field_name)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"item {n}: no text in field {field_name!r}: pass field=NAME")
        raw_id = data.get(id_field)
        yield n, Item(str(raw_id) if raw_id is not None else str(n), text, n + 1, data)


async def stream(
    session: Session, items: Iterable[str | dict[str, Any]], opts: BatchOptions, *, label: str = ""
) -> AsyncIterator[dict[str, Any]]:
    """Rows as they finish (or in input order with ``opts.ordered``), for ``Session.batch``."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    limit = max(opts.concurrency * 4, 2 * opts.block_size)
    ordered = _Ordered() if opts.ordered else None

    async with session.run(
        RUN_KIND, label or f"batch {opts.spec.task}", budget_usd=opts.budget_usd, fan_out=opts.fan_out()
    ) as scope:

        def emit(rows: list[tuple[int, dict[str, Any]]]) -> None:
            for seq, r in rows if ordered is None else ordered.release(rows):
                del seq
                queue.put_nowait(r)

        async def slot(seq: int) -> None:
            while queue.qsize() > limit:  # the consumer is behind: do not run further ahead of it
                await asyncio.sleep(0.005)

        async def produce() -> None:
            try:
                if opts.executor == "ray":
                    from tierwise.scale.ray_exec import run_ray

                    stopped = await run_ray(
                        session.config, session._ledger_url, scope.id, opts.spec,
                        as_items(items, opts.field, opts.id_field),
                        emit, slot=slot, budget_usd=scope.budget.caps.usd, spent_usd=0.0,
                        address=opts.ray_address, concurrency=opts.concurrency, block_size=opts.block_size,
                        num_cpus=opts.ray_cpus,
                    )  # fmt: skip
                else:
                    stopped = await run_local(
                        scope, opts.spec, as_items(items, opts.field, opts.id_field), emit, slot=slot,
                        concurrency=opts.concurrency, block_size=opts.block_size,
                        pool=_pool(session, scope, opts),
                    )  # fmt: skip
                if stopped is not None:
                    scope.partial(f"stopped by the budget: {stopped}")
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(produce())
        try:
            while (r := await queue.get()) is not None:
                yield r
            await task
        finally:
            if not task.done():
                task.cancel()


class _Ordered:
    """Rows released in seq order (for the iterator; the file writer has its own window)."""

    def __init__(self) -> None:
        self.next, self.held = 0, {}

    def release(self, rows: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for seq, r in rows:
            self.held[seq] = r
        while self.next in self.held:
            out.append((self.next, self.held.pop(self.next)))
            self.next += 1
        return out
