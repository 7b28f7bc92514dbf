"""Batching and durability: flushed means committed, even if the process is killed right after."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from typing import Any

import sqlalchemy as sa

from tierwise.ledger import CallRecord, Ledger, RunRecord, StepRecord
from tierwise.ledger.schema import create_engine, normalize_url


def call(run_id: str, **fields: Any) -> CallRecord:
    base: dict[str, Any] = {
        "task_kind": "classify",
        "tier": "nano",
        "model": "openai/gpt-5.4-nano",
        "provider": "openai",
        "reason": "rule",
        "status": "ok",
        "cost_usd": 0.0001,
    }
    return CallRecord(run_id=run_id, **(base | fields))


def count_calls(url: str, run_id: str) -> int:
    """Count from a separate engine: only committed rows are visible there."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM calls WHERE run_id = :run_id")
            return int(conn.execute(query, {"run_id": run_id}).scalar_one())
    finally:
        engine.dispose()


def test_ten_thousand_calls_are_committed_by_flush(any_url: str) -> None:
    records = [call("bulk", output=f"answer {i}") for i in range(10_000)]
    timings: list[float] = []
    with Ledger(any_url) as ledger:
        for rec in records:
            start = time.perf_counter()
            ledger.record_call(rec)
            timings.append(time.perf_counter() - start)
        ledger.flush()
        assert count_calls(any_url, "bulk") == 10_000
    # The caller's side is a queue put, not a database round trip. (The median, because a put
    # sometimes waits for the GIL while the writer thread converts a batch.)
    median = sorted(timings)[len(timings) // 2]
    assert median < 5e-6, f"record_call took {median * 1e6:.1f} µs (median)"


def test_flushed_rows_survive_sigkill(any_url: str) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from tierwise.ledger import CallRecord, Ledger, RunRecord, StepRecord

        ledger = Ledger(sys.argv[1])
        ledger.start_run(RunRecord(id="killed", kind="test"))
        for i in range(2000):
            ledger.record_call(CallRecord(
                id=f"flushed-{i:05d}", run_id="killed", task_kind="classify", tier="nano",
                model="m", provider="p", reason="r", status="ok"))
        ledger.record_step(StepRecord(run_id="killed", step_id="s1", status="ok"), durable=True)
        ledger.flush()
        print("FLUSHED", flush=True)
        i = 0
        while True:  # keep the writer busy until the parent kills us mid-batch
            ledger.record_call(CallRecord(
                id=f"late-{i}", run_id="killed", task_kind="classify", tier="nano",
                model="m", provider="p", reason="r", status="ok"))
            i += 1
            if i % 100 == 0:
                time.sleep(0.001)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, any_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "FLUSHED", proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)  # let later batches be in flight when the kill lands
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with Ledger(any_url) as ledger:
        ids = {c.id for c in ledger.calls("killed")}
        assert {f"flushed-{i:05d}" for i in range(2000)} <= ids
        assert set(ledger.finished_steps("killed")) == {"s1"}
        assert ledger.get_run("killed").status == "running"  # never finished: resume can tell


async def test_many_asyncio_tasks_write_concurrently(any_url: str) -> None:
    tasks, per_task = 100, 100
    ledger = Ledger(any_url)
    try:
        ledger.start_run(RunRecord(id="fan-out", kind="batch"))

        async def worker(n: int) -> None:
            for i in range(per_task):
                ledger.record_call(call("fan-out", id=f"t{n}-c{i}", step_id=f"step-{n}"))
                if i % 10 == 0:
                    await asyncio.sleep(0)
            await ledger.record_step_durable(StepRecord(run_id="fan-out", step_id=f"step-{n}", status="ok"))
            # Durable means visible to anyone, right now.
            assert f"step-{n}" in finished_elsewhere(any_url)

        await asyncio.gather(*(worker(n) for n in range(tasks)))
        ledger.finish_run("fan-out", "ok")
        await ledger.aflush()
        assert count_calls(any_url, "fan-out") == tasks * per_task
        assert len({c.id for c in ledger.calls("fan-out")}) == tasks * per_task
        assert len(ledger.finished_steps("fan-out")) == tasks
        summary = ledger.run_summary("fan-out")
        assert summary["calls"] == tasks * per_task
        assert len(summary["cost_by_step"]) == tasks
    finally:
        await ledger.aclose()


def finished_elsewhere(url: str) -> set[str]:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT step_id FROM steps WHERE run_id = 'fan-out' AND status = 'ok'")
            return {row[0] for row in conn.execute(query)}
    finally:
        engine.dispose()


async def test_the_event_loop_keeps_running_while_the_writer_writes(sqlite_url: str) -> None:
    ledger = Ledger(sqlite_url)
    lags: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            lags.append(loop.time() - before - 0.001)

    tick = asyncio.create_task(ticker())
    try:
        for batch in range(20):
            for i in range(1000):
                ledger.record_call(call("lag", id=f"b{batch}-{i}", output="x" * 500))
            await asyncio.sleep(0.005)
        await ledger.aflush()
    finally:
        tick.cancel()
        await ledger.aclose()
    assert count_calls(sqlite_url, "lag") == 20_000
    # The loop only ever waits for the GIL (a few ms at worst), never for a commit or an fsync.
    assert max(lags) < 0.5, f"event loop stalled for {max(lags) * 1000:.0f} ms"


async def test_aflush_from_the_event_loop_and_durable_steps(sqlite_url: str) -> None:
    async with Ledger(sqlite_url, flush_interval_s=10.0) as ledger:
        ledger.record_call(call("r1", id="waiting"))
        # The interval is long, but aflush does not wait for it.
        start = time.perf_counter()
        await ledger.aflush()
        assert time.perf_counter() - start < 1.0
        assert count_calls(sqlite_url, "r1") == 1
        await ledger.record_step_durable(StepRecord(run_id="r1", step_id="s", status="ok"))
        assert "s" in ledger.finished_steps("r1")


def test_close_commits_what_is_queued(sqlite_url: str) -> None:
    ledger = Ledger(sqlite_url, flush_interval_s=10.0, batch_size=7)
    for i in range(100):
        ledger.record_call(call("r1", id=f"c{i}"))
    ledger.close()
    assert count_calls(sqlite_url, "r1") == 100


def test_forgotten_close_is_flushed_at_exit(sqlite_url: str) -> None:
    script = textwrap.dedent(
        """
        import sys
        from tierwise.ledger import CallRecord, Ledger
        ledger = Ledger(sys.argv[1], flush_interval_s=60.0)
        for i in range(500):
            ledger.record_call(CallRecord(
                run_id="exit", task_kind="classify", tier="nano", model="m", provider="p",
                reason="r", status="ok"))
        """
    )
    subprocess.run([sys.executable, "-c", script, sqlite_url], check=True, timeout=120)
    assert count_calls(sqlite_url, "exit") == 500


def test_flush_behind_several_batches_does_not_wait_out_the_interval(sqlite_url: str) -> None:
    # With a 10-minute gathering interval, a flush queued behind three batches must still return
    # as soon as they are written: the writer may not sit out the interval between batches.
    script = textwrap.dedent(
        """
        import sys
        from tierwise.ledger import CallRecord, Ledger
        ledger = Ledger(sys.argv[1], flush_interval_s=600.0, batch_size=10)
        for i in range(35):
            ledger.record_call(CallRecord(
                run_id="multi", task_kind="classify", tier="nano", model="m", provider="p",
                reason="r", status="ok"))
        ledger.flush()
        ledger.close()
        """
    )
    subprocess.run([sys.executable, "-c", script, sqlite_url], check=True, timeout=60)
    assert count_calls(sqlite_url, "multi") == 35


def _intent(i: int) -> dict[str, Any]:
    return {
        "id": f"intent-{i}", "run_id": "held", "step_id": None, "operation": "chat", "task_kind": "classify",
        "tier": "nano", "model": "m", "provider": "p", "reason": "r", "reserved_usd": 0.001,
        "notional": False,
    }  # fmt: skip


def _intent_ids(url: str) -> set[str]:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(sa.text("SELECT id FROM intents"))}
    finally:
        engine.dispose()


async def test_intents_of_one_turn_commit_together_before_their_callers_go_on(sqlite_url: str) -> None:
    ledger = Ledger(sqlite_url)
    try:
        await asyncio.gather(*(ledger.intend(_intent(i)) for i in range(50)))
        # Committed when the callers go on: another engine sees every one.
        assert _intent_ids(sqlite_url) == {f"intent-{i}" for i in range(50)}
    finally:
        await ledger.aclose()


async def test_an_intent_waits_off_the_loop_while_another_process_holds_the_database(
    sqlite_url: str,
) -> None:
    ledger = Ledger(sqlite_url)
    other = sqlite3.connect(sa.make_url(sqlite_url).database or "", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, as another process's transaction holds it
        pending = asyncio.create_task(ledger.intend(_intent(1)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(20):
            await asyncio.sleep(0.005)
        # The loop went on (no 30 s busy wait on it), and the caller is still waiting: nothing is sent
        # before its intent is written.
        assert loop.time() - started < 1.0
        assert not pending.done()
        other.execute("COMMIT")
        await asyncio.wait_for(pending, 10)
        assert _intent_ids(sqlite_url) == {"intent-1"}
        await ledger.intend(_intent(2))  # and the next turn writes inline again
        assert _intent_ids(sqlite_url) == {"intent-1", "intent-2"}
    finally:
        other.close()
        await ledger.aclose()
