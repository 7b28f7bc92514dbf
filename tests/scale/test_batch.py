"""`tierwise batch` on the chaos server: rows, order, bad input, budget, resume after SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import chaos_config, tw
from tests.scale.batch_files import asked as _asked
from tests.scale.batch_files import env, start_batch, wait_rows
from tests.scale.batch_files import items as _items
from tests.scale.batch_files import rows as _rows
from tierwise.session import Session
from tierwise.testing import ChaosServer


def test_ask_rows_ordered_and_bad_rows(tmp_path: Path, chaos_toml: Path, chaos_server: ChaosServer) -> None:
    inp = _items(tmp_path / "in.jsonl", 40, bad=True)
    out = tmp_path / "out.jsonl"
    args = (
        "--config",
        str(chaos_toml),
        "batch",
        str(inp),
        "--task",
        "ask",
        "--tier",
        "nano",
        "--out",
        str(out),
    )
    r = tw(*args, "--ordered", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["done"] == 40 and summary["bad_rows"] == 2
    rows = _rows(out)
    assert [x["id"] for x in rows] == [f"t{i}" for i in range(40)]  # --ordered: input order
    assert rows[7]["result"] == "echo: ticket 7"
    assert rows[0]["tier"] == "nano" and rows[0]["model"] == "chaos/nano" and rows[0]["cost_usd"] > 0
    assert set(rows[0]) == {"id", "result", "tier", "model", "cost_usd", "reason", "error"}
    # --strict: the first bad row stops the batch with its line number, in one line
    r = tw(*args[:-1], str(tmp_path / "strict.jsonl"), "--strict", cwd=tmp_path)
    assert r.returncode == 2 and "line 4" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # the same command again: nothing is requested again
    before = len(chaos_server.requests())
    r = tw(*args, "--ordered", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["skipped_done_before"] == 40 and len(chaos_server.requests()) == before


@pytest.mark.parametrize(
    ("setup", "extra", "says"),
    [
        (lambda p: p.write_text(""), (), "is empty"),
        (lambda p: p.write_text("body,other\nx,y\n"), ("--labels", "a,b"), None),
        (lambda p: p.write_text("text,other\n"), ("--labels", "a,b"), "has no rows"),
        (lambda p: p.write_text('{"text": "x"}\n'), ("--task", "classify"), "needs labels"),
        (lambda p: p.write_text('{"text": "x"}\n'), ("--labels", "a"), "at least 2"),
        (lambda p: p.write_text('{"text": "x"}\n'), ("--kind", "summary"), "unknown task kind 'summary'"),
        (lambda p: p.write_text('{"text": "x"}\n'), ("--labels", "a,b", "--kind", "rank"), "drop --kind"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, chaos_toml: Path, setup, extra, says) -> None:
    inp = tmp_path / ("in.csv" if "--labels" in extra and says in (None, "has no rows") else "in.jsonl")
    setup(inp)
    task = () if "--task" in extra else ("--task", "classify" if "--labels" in extra else "ask")
    r = tw(
        "--config",
        str(chaos_toml),
        "batch",
        str(inp),
        *task,
        *extra,
        "--out",
        str(tmp_path / "o.jsonl"),
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error:")
    assert (says or "no 'text' column") in line


def test_schema_not_json_schema_and_sqlite_with_ray(tmp_path: Path, chaos_toml: Path) -> None:
    inp = _items(tmp_path / "in.jsonl", 3)
    bad = tmp_path / "s.json"
    bad.write_text('{"type": "no-such-type"}')
    base = ("--config", str(chaos_toml), "batch", str(inp), "--out", str(tmp_path / "o.jsonl"))
    r = tw(*base, "--task", "extract", "--schema", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = tw(*base, "--task", "ask", "--executor", "ray", cwd=tmp_path)
    assert r.returncode == 2 and "PostgreSQL" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_budget_stops_before_spending_and_resume_finishes(tmp_path: Path, chaos_toml: Path) -> None:
    inp = _items(tmp_path / "in.jsonl", 30)
    out = tmp_path / "out.jsonl"
    args = (
        "--config",
        str(chaos_toml),
        "batch",
        str(inp),
        "--task",
        "ask",
        "--tier",
        "nano",
        "--out",
        str(out),
    )
    r = tw(*args, "--budget", "0.0004", "--concurrency", "1", "--json", cwd=tmp_path)
    first = json.loads(r.stdout)
    assert r.returncode == 1 and first["stopped"] and 0 < first["done"] < 30
    spent = sum(x["cost_usd"] for x in _rows(out))
    assert spent <= 0.0004
    r = tw(*args, "--budget", "1", "--json", cwd=tmp_path)
    second = json.loads(r.stdout)
    assert r.returncode == 0 and second["skipped_done_before"] == first["done"]
    assert sorted(x["id"] for x in _rows(out)) == sorted(f"t{i}" for i in range(30))


def test_sigkill_then_resume_asks_nothing_twice(tmp_path: Path) -> None:
    with ChaosServer(latency_s=0.05) as server:
        toml = tmp_path / "tierwise.toml"
        toml.write_text(chaos_config(server.base_url, f"sqlite:///{tmp_path}/ledger.db"))
        inp = _items(tmp_path / "in.jsonl", 300)
        out = tmp_path / "out.jsonl"
        cmd, proc = start_batch(tmp_path, toml, inp, out, "--concurrency", "8")
        wait_rows(out, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = {x["id"] for x in _rows(out) if x["error"] is None}
        assert 0 < len(finished) < 300
        asked_before = _asked(server)
        r = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        asked_after = _asked(server)
        again = [i for i in finished if asked_after[f"ticket {i[1:]}"] != asked_before[f"ticket {i[1:]}"]]
        assert again == []  # no finished item requested again
        rows = _rows(out)
        assert sorted({x["id"] for x in rows}) == sorted(f"t{i}" for i in range(300))  # none missing
        assert len(rows) == 300  # and none written twice


async def test_python_api(chaos_toml: Path) -> None:
    async with Session(chaos_toml) as s:
        rows = [
            r async for r in s.batch(["a", {"id": "b", "text": "bee"}], task="ask", tier="nano", ordered=True)
        ]
    assert [(r["id"], r["result"]) for r in rows] == [("0", "echo: a"), ("b", "echo: bee")]


async def test_ask_items_inferred_a_block_at_a_time_or_of_the_stated_kind(chaos_toml: Path) -> None:
    texts = ["Fix the failing unit test in the parser", "Classify this ticket: my card was stolen"]
    async with Session(chaos_toml) as s:
        inferred = [r async for r in s.batch(texts, task="ask", tier="nano", ordered=True)]
        stated = [r async for r in s.batch(texts, task="ask", kind="synthesis", ordered=True)]
        assert s.ledger is not None
        calls = [c for c in s.ledger.calls(limit=10) if c.operation == "chat"]
    assert all("inferred from the text (static classifier" in r["reason"] for r in inferred)
    # A stated kind is routed on (synthesis at normal stakes: mini), and nothing is inferred.
    assert all(r["tier"] == "mini" and "inferred" not in r["reason"] for r in stated)
    kinds = Counter(c.task_kind for c in calls)
    assert kinds["synthesis"] == 2 and sum(kinds.values()) == 4
