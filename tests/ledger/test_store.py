"""The Ledger on SQLite and PostgreSQL: what goes in comes out, reads, spend, and its error messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tierwise.errors import InputError, LedgerError
from tierwise.ledger import REDACTED, CallRecord, Ledger, RunRecord, StepRecord, new_id
from tierwise.ledger.schema import normalize_url


def call(run_id: str, **fields: Any) -> CallRecord:
    base: dict[str, Any] = {
        "task_kind": "classify",
        "tier": "nano",
        "model": "openai/gpt-5.4-nano",
        "provider": "openai",
        "reason": "rule: classify → nano",
        "status": "ok",
    }
    return CallRecord(run_id=run_id, **(base | fields))


def test_every_field_round_trips(any_url: str) -> None:
    started = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    # A non-UTC offset comes back as the same instant, in UTC.
    created = datetime(2025, 3, 1, 14, 30, 1, 654321, tzinfo=timezone(timedelta(hours=2)))
    run = RunRecord(
        id=new_id(),
        kind="system:pr_review",
        label="review PR #12",
        status="running",
        budget_usd=2.5,
        started_at=started,
        metadata={"repo": "acme/app", "nested": {"n": [1, 2, 3]}, "flag": True},
    )
    rec = call(
        run.id,
        id="call-1",
        step_id="step-7",
        attempt=3,
        operation="stream",
        served_model="gpt-5.4-nano-2025-08-07",
        input_tokens=1200,
        cached_input_tokens=800,
        output_tokens=345,
        reasoning_tokens=67,
        cost_usd=0.000123456789,
        notional=True,
        latency_ms=812.25,
        error="upstream 503 after 2 retries",
        output='{"label": "bug", "score": 0.93}',
        prompt='[{"role": "user", "content": "classify this"}]',
        created_at=created,
        metadata={"chaos": "503", "temperature": 0.2},
    )
    step = StepRecord(
        run_id=run.id,
        step_id="step-7",
        status="ok",
        tier="mini",
        output="patched 2 files",
        cost_usd=0.0421,
        error=None,
        created_at=created,
        metadata={"files": ["a.py", "b.py"]},
    )
    with Ledger(any_url, store_prompts=True) as ledger:
        ledger.start_run(run)
        ledger.record_call(rec)
        ledger.record_step(step)
        ledger.record_call(call(run.id, id="call-2", cost_usd=None))
        ledger.flush()

    with Ledger(any_url) as reader:  # a second connection: everything came from the database
        assert reader.get_run(run.id) == run
        got = reader.calls(run.id)
        assert got[0] == rec
        assert got[0].created_at.tzinfo == UTC
        assert got[1].cost_usd is None
        assert got[1].metadata == {}
        assert reader.steps(run.id) == [step]
        stored_run = reader.get_run(run.id)
        assert stored_run.started_at.tzinfo == UTC
        assert stored_run.ended_at is None


def test_finish_run_and_restart_for_resume(any_url: str) -> None:
    with Ledger(any_url) as ledger:
        run = RunRecord(id=new_id(), kind="orchestrate", label="goal")
        ledger.start_run(run)
        ledger.finish_run(run.id, "interrupted", error="KeyboardInterrupt")
        done = ledger.get_run(run.id)
        assert done.status == "interrupted"
        assert done.error == "KeyboardInterrupt"
        assert done.ended_at is not None and done.ended_at >= run.started_at

        # Resume starts the same run id again: it is running again, its first start time kept.
        ledger.start_run(RunRecord(id=run.id, kind="orchestrate", label="goal"))
        resumed = ledger.get_run(run.id)
        assert (resumed.status, resumed.ended_at, resumed.error) == ("running", None, None)
        assert resumed.started_at == run.started_at
        ledger.finish_run(run.id, "ok")
        assert ledger.get_run(run.id).status == "ok"


def test_prompts_are_not_stored_by_default(sqlite_url: str) -> None:
    with Ledger(sqlite_url) as ledger:
        ledger.record_call(call("r1", prompt="the user's private question"))
        assert ledger.calls("r1")[0].prompt is None


def test_secrets_are_redacted_before_storage(sqlite_url: str) -> None:
    key = "sk-proj-" + "a1B2c3D4" * 6
    with Ledger(sqlite_url, store_prompts=True) as ledger:
        ledger.start_run(RunRecord(id="r1", kind="ask", label=f"use {key} please"))
        ledger.record_call(
            call("r1", error=f"401 for key {key}", output=f"your key is {key}", prompt=f"key={key}")
        )
        ledger.record_step(StepRecord(run_id="r1", step_id="s", status="failed", output=key, error=key))
        ledger.finish_run("r1", "failed", error=f"Authorization: Bearer {key}")
        run, stored, step = ledger.get_run("r1"), ledger.calls("r1")[0], ledger.steps("r1")[0]
    texts = [run.label, run.error, stored.error, stored.output, stored.prompt, step.output, step.error]
    assert all(t is not None and key not in t and REDACTED in t for t in texts), texts
    assert run.label == f"use {REDACTED} please"


def test_get_run_accepts_a_unique_prefix(sqlite_url: str) -> None:
    with Ledger(sqlite_url) as ledger:
        for run_id in ("abc123", "abd456", "ab"):
            ledger.start_run(RunRecord(id=run_id, kind="ask"))
        assert ledger.get_run("abc").id == "abc123"
        assert ledger.get_run("abd4").id == "abd456"
        assert ledger.get_run("ab").id == "ab"  # an exact id wins over being a prefix of others
        with pytest.raises(LedgerError, match=r"'a' is ambiguous.*more characters"):
            ledger.get_run("a")
        with pytest.raises(LedgerError, match=r"no run with id 'zz'.*tierwise runs"):
            ledger.get_run("zz")
        with pytest.raises(LedgerError, match="no run with id 'a_'"):  # LIKE wildcards are escaped
            ledger.get_run("a_")


def test_runs_newest_first(sqlite_url: str) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    with Ledger(sqlite_url) as ledger:
        for i in (2, 0, 1):
            ledger.start_run(RunRecord(id=f"run{i}", kind="ask", started_at=t0 + timedelta(minutes=i)))
        assert [r.id for r in ledger.runs()] == ["run2", "run1", "run0"]
        assert [r.id for r in ledger.runs(limit=1)] == ["run2"]


def test_calls_in_order_and_the_latest_n(sqlite_url: str) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    with Ledger(sqlite_url) as ledger:
        for i in range(5):
            ledger.record_call(call("r1", id=f"c{i}", created_at=t0 + timedelta(seconds=i)))
        ledger.record_call(call("r2", id="other"))
        assert [c.id for c in ledger.calls("r1")] == ["c0", "c1", "c2", "c3", "c4"]
        assert [c.id for c in ledger.calls("r1", limit=2)] == ["c3", "c4"]
        assert len(ledger.calls()) == 6


def test_latest_step_record_wins(sqlite_url: str) -> None:
    with Ledger(sqlite_url) as ledger:
        ledger.record_step(StepRecord(run_id="r1", step_id="a", status="failed", error="timeout"))
        ledger.record_step(StepRecord(run_id="r1", step_id="b", status="ok", output="B"))
        ledger.record_step(StepRecord(run_id="r1", step_id="a", status="ok", output="A"))
        ledger.record_step(StepRecord(run_id="r1", step_id="c", status="failed"))
        ledger.record_step(StepRecord(run_id="r2", step_id="a", status="ok"))
        steps = ledger.steps("r1")
        assert [(s.step_id, s.status) for s in steps] == [("b", "ok"), ("a", "ok"), ("c", "failed")]
        finished = ledger.finished_steps("r1")
        assert sorted(finished) == ["a", "b"]
        assert finished["a"].output == "A"


def test_spend_groups_and_totals(any_url: str) -> None:
    with Ledger(any_url) as ledger:
        large = {"tier": "large", "model": "openai/gpt-5.4", "task_kind": "plan"}
        records = [
            call("r1", **large, cost_usd=0.5, input_tokens=100),
            call("r1", **large, cost_usd=0.25, output_tokens=7),
            call("r1", tier="nano", cost_usd=0.01, cached_input_tokens=50, reasoning_tokens=3),
            call("r2", tier="nano", cost_usd=None),
            call("r2", tier="mini", model="local/qwen", provider="local", cost_usd=0.002, notional=True),
            call("r2", tier="mini", model="local/qwen2", provider="local", cost_usd=None),
        ]
        for rec in records:
            ledger.record_call(rec)
        by_tier = {row["key"]: row for row in ledger.spend("tier")}
        assert [row["key"] for row in ledger.spend("tier")] == ["large", "nano", "mini"]  # costliest first
        assert by_tier["large"] == {
            "key": "large",
            "calls": 2,
            "input_tokens": 100,
            "cached_input_tokens": 0,
            "output_tokens": 7,
            "reasoning_tokens": 0,
            "cost_usd": pytest.approx(0.75),
            "notional": False,
        }
        assert by_tier["nano"]["cost_usd"] == pytest.approx(0.01)  # one unknown cost does not erase it
        assert (by_tier["nano"]["cached_input_tokens"], by_tier["nano"]["reasoning_tokens"]) == (50, 3)
        assert by_tier["mini"]["notional"] is True

        by_model = {row["key"]: row for row in ledger.spend("model")}
        assert by_model["local/qwen2"]["cost_usd"] is None  # every cost unknown → None, not 0
        assert by_model["local/qwen"]["notional"] is True

        by_run = {row["key"]: (row["calls"], row["cost_usd"]) for row in ledger.spend("run")}
        assert by_run == {"r1": (3, pytest.approx(0.76)), "r2": (3, pytest.approx(0.002))}
        by_kind = {row["key"]: row["calls"] for row in ledger.spend("kind")}
        assert by_kind == {"plan": 2, "classify": 4}
        assert [row["key"] for row in ledger.spend("tier", run_id="r2")] == ["mini", "nano"]
        assert ledger.spend("tier", since=datetime.now(UTC) + timedelta(hours=1)) == []
        with pytest.raises(InputError, match="tier, model, run, kind"):
            ledger.spend("provider")  # type: ignore[arg-type]


def test_run_summary(any_url: str) -> None:
    with Ledger(any_url) as ledger:
        ledger.start_run(RunRecord(id="summary-run", kind="orchestrate", label="fix the bug"))
        ledger.record_call(call("summary-run", tier="large", task_kind="plan", cost_usd=0.4, input_tokens=10))
        ledger.record_call(call("summary-run", step_id="s1", tier="mini", cost_usd=0.05, output_tokens=5))
        ledger.record_call(call("summary-run", step_id="s1", tier="mini", status="error", cost_usd=None))
        ledger.record_call(call("summary-run", step_id="s2", tier="nano", cost_usd=0.001, notional=True))
        ledger.record_step(StepRecord(run_id="summary-run", step_id="s1", status="ok"))
        ledger.record_step(StepRecord(run_id="summary-run", step_id="s2", status="failed"))
        ledger.finish_run("summary-run", "failed", error="step s2 failed")
        summary = ledger.run_summary("summary")
    assert summary["run_id"] == "summary-run"
    assert (summary["status"], summary["error"], summary["calls"]) == ("failed", "step s2 failed", 4)
    assert summary["cost_usd"] == pytest.approx(0.451)
    assert summary["notional"] is True
    assert summary["cost_by_tier"] == {
        "large": pytest.approx(0.4),
        "mini": pytest.approx(0.05),
        "nano": pytest.approx(0.001),
    }
    assert summary["cost_by_step"] == {"s1": pytest.approx(0.05), "s2": pytest.approx(0.001)}
    assert summary["unattributed_cost_usd"] == pytest.approx(0.4)
    assert summary["tokens"]["input_tokens"] == 10 and summary["tokens"]["output_tokens"] == 5
    assert summary["statuses"] == {"ok": 3, "error": 1}
    assert summary["step_statuses"] == {"ok": 1, "failed": 1}
    assert isinstance(summary["started_at"], str) and isinstance(summary["ended_at"], str)


def test_write_errors_surface_at_the_next_flush(sqlite_url: str) -> None:
    with Ledger(sqlite_url) as ledger:
        ledger.record_call(call("r1", id="dup"))
        ledger.flush()
        ledger.record_call(call("r1", id="before"))
        ledger.record_call(call("r1", id="dup"))  # violates the unique id
        ledger.record_call(call("r1", id="after"))
        with pytest.raises(LedgerError, match="could not write call 'dup'"):
            ledger.flush()
        # The rest of the batch was written, and the error is reported once.
        assert [c.id for c in ledger.calls("r1")] == ["dup", "before", "after"]
        ledger.flush()
        ledger.finish_run("never-started", "ok")
        with pytest.raises(LedgerError, match=r"never-started.*start_run"):
            ledger.flush()


def test_write_errors_surface_at_close(sqlite_url: str) -> None:
    ledger = Ledger(sqlite_url)
    ledger.finish_run("never-started", "ok")
    with pytest.raises(LedgerError, match="never-started"):
        ledger.close()


def test_a_closed_ledger_refuses_writes(sqlite_url: str) -> None:
    ledger = Ledger.open(sqlite_url)
    ledger.close()
    ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        ledger.record_call(call("r1"))


def test_in_memory_sqlite(sqlite_url: str) -> None:
    with Ledger("sqlite://") as ledger:
        for i in range(300):
            ledger.record_call(call("r1", id=f"c{i}"))
        assert len(ledger.calls("r1")) == 300


def test_relative_sqlite_url_creates_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Ledger("sqlite:///.tierwise/nested/ledger.db") as ledger:
        ledger.record_call(call("r1"))
    assert (tmp_path / ".tierwise" / "nested" / "ledger.db").is_file()
    with Ledger(".tierwise/nested/ledger.db") as ledger:  # a bare path means SQLite
        assert len(ledger.calls("r1")) == 1


def test_url_normalization() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(LedgerError, match=r"cannot open the ledger at nope://x/y.*Fix: check the ledger URL"):
        Ledger("nope://x/y")


def test_unreachable_postgres_names_the_fix() -> None:
    with pytest.raises(LedgerError) as info:
        Ledger("postgresql://tw:hunter2@127.0.0.1:1/tierwise")
    message = str(info.value)
    assert "postgresql+psycopg://tw:***@127.0.0.1:1/tierwise" in message
    assert "pg_isready -h 127.0.0.1 -p 1" in message
    assert "hunter2" not in message


def test_unwritable_sqlite_path_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(LedgerError, match=r"cannot open the ledger at sqlite:///.*a-file/ledger\.db.*Fix"):
        Ledger(f"sqlite:///{blocker}/ledger.db")
    # A folder where the database file should be.
    with pytest.raises(LedgerError, match=r"cannot open the ledger.*is a folder.*/ledger\.db"):
        Ledger(f"sqlite:///{tmp_path}")
    # A file that is not a database.
    with pytest.raises(LedgerError, match="is not a SQLite database"):
        Ledger(f"sqlite:///{blocker}")


@pytest.mark.postgres
def test_postgres_tables_and_indexes(postgres_url: str) -> None:
    with Ledger(postgres_url) as ledger:
        ledger.record_call(call("r1"))
        ledger.flush()
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        inspector = sa.inspect(engine)
        assert {"runs", "calls", "steps"} <= set(inspector.get_table_names())
        indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes("calls")}
        assert {("run_id",), ("created_at",)} <= indexed
        columns = {c["name"]: c["type"] for c in inspector.get_columns("calls")}
        assert "JSONB" in str(columns["metadata"])
        assert columns["created_at"].timezone is True  # timestamptz
    finally:
        engine.dispose()
