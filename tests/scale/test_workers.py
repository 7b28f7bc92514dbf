"""`--workers N`: worker processes take a share of a local batch's calls under the one budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import PeakCalls, chaos_config, tw
from tests.scale.batch_files import asked as _asked
from tests.scale.batch_files import env, start_batch, wait_rows
from tests.scale.batch_files import items as _items
from tests.scale.batch_files import rows as _rows
from tierwise.config import Config
from tierwise.errors import InputError
from tierwise.ledger import Ledger
from tierwise.scale import BatchOptions, TaskSpec, run_file
from tierwise.session import Session
from tierwise.testing import ChaosServer


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a dead parent's init) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def test_two_workers_share_the_calls_and_give_the_rows_of_one(
    tmp_path: Path, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"latency_s": 0.05})
    inp = _items(tmp_path / "in.jsonl", 300)
    async with Session(chaos_toml) as s:
        spec = TaskSpec("ask", tier="nano")
        one = await run_file(s, inp, tmp_path / "one.jsonl", BatchOptions(spec, concurrency=20))
        two = await run_file(s, inp, tmp_path / "two.jsonl", BatchOptions(spec, concurrency=20, workers=2))
        assert s.ledger is not None
        calls = s.ledger.calls(run_id=two.run_id, limit=1000)
    assert one.done == two.done == 300 and two.failed == 0
    assert two.by_workers > 0, "the worker process took no call"
    assert two.by_workers < 300, "the batch process took no call"
    by_id = {r["id"]: r for r in _rows(tmp_path / "one.jsonl")}
    rows = _rows(tmp_path / "two.jsonl")
    assert len(rows) == 300 and {r["id"] for r in rows} == set(by_id)
    for r in rows:  # the same one path in either process: the same result, tier and model
        assert (r["result"], r["tier"], r["model"]) == (by_id[r["id"]]["result"], "nano", "chaos/nano")
    # Every call of both processes is in the ledger under the batch's run, once per item.
    chat = [c for c in calls if c.operation == "chat"]
    assert len(chat) == 300
    assert sum(c.cost_usd or 0 for c in chat) == pytest.approx(sum(r["cost_usd"] for r in rows))
    assert Counter(_asked(chaos_server)[f"ticket {i}"] for i in range(300)) == Counter({2: 300})


async def test_a_money_cap_holds_across_processes_and_resume_finishes(
    tmp_path: Path, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"latency_s": 0.02})
    inp = _items(tmp_path / "in.jsonl", 200)
    out = tmp_path / "out.jsonl"
    cap = 0.0015  # about a third of what 200 nano calls cost on the chaos server
    async with Session(chaos_toml) as s:
        spec = TaskSpec("ask", tier="nano")
        first = await run_file(s, inp, out, BatchOptions(spec, concurrency=16, workers=2, budget_usd=cap))
        assert first.stopped and 0 < first.done < 200
        assert s.ledger is not None
        paid = sum(c.cost_usd or 0 for c in s.ledger.calls(run_id=first.run_id, limit=1000))
        assert paid <= cap + 1e-12  # both processes together, as the ledger counts them
        assert sum(r["cost_usd"] for r in _rows(out)) == pytest.approx(paid)
        asked = _asked(chaos_server)
        second = await run_file(s, inp, out, BatchOptions(spec, concurrency=16, workers=2, budget_usd=1.0))
    assert second.stopped is None and second.skipped == first.done
    rows = _rows(out)
    assert sorted(r["id"] for r in rows) == sorted(f"t{i}" for i in range(200)) and len(rows) == 200
    after = _asked(chaos_server)
    assert all(after[f"ticket {r['id'][1:]}"] == asked[f"ticket {r['id'][1:]}"] for r in rows[: first.done])


async def test_a_provider_billing_past_the_estimate_stops_both_processes(
    tmp_path: Path, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    # Each call bills 200,000 input tokens ($0.04 on nano) against a $0.01 cap: the first overruns it.
    chaos_server.set_script(
        {"latency_s": 0.02, "rules": [{"reply": {"text": "ok", "usage": {"prompt_tokens": 200_000}}}]}
    )
    inp = _items(tmp_path / "in.jsonl", 100)
    async with Session(chaos_toml) as s:
        spec = TaskSpec("ask", tier="nano")
        rep = await run_file(
            s, inp, tmp_path / "o.jsonl", BatchOptions(spec, concurrency=4, workers=2, budget_usd=0.01)
        )
    assert rep.stopped and "overrun" in rep.stopped
    # No call is sent once an overrun is known: the overshoot is bounded by the calls already in flight.
    assert len(chaos_server.requests("/v1/chat/completions")) <= 4


@pytest.mark.parametrize(
    ("ledger", "extra", "says"),
    [
        ("sqlite://", "", "in-memory SQLite"),
        ("file", "[budget]\nper_run_calls = 1000\n", "token or call cap"),
    ],
)
async def test_what_workers_cannot_split_is_one_line(
    tmp_path: Path, chaos_server: ChaosServer, ledger: str, extra: str, says: str
) -> None:
    toml = tmp_path / "tierwise.toml"
    url = f"sqlite:///{tmp_path}/l.db" if ledger == "file" else ledger
    toml.write_text(chaos_config(chaos_server.base_url, url, extra))
    async with Session(toml) as s:
        with pytest.raises(InputError, match=says) as err:
            await run_file(
                s, _items(tmp_path / "in.jsonl", 3), tmp_path / "o.jsonl",
                BatchOptions(TaskSpec("ask", tier="nano"), workers=2),
            )  # fmt: skip
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="local executor"):
        BatchOptions(TaskSpec("ask"), workers=2, executor="ray")
    with pytest.raises(InputError, match="at least 1"):
        BatchOptions(TaskSpec("ask"), workers=0)


def test_cli_workers_flag_and_bad_value(tmp_path: Path, chaos_toml: Path) -> None:
    inp = _items(tmp_path / "in.jsonl", 60)
    out = tmp_path / "out.jsonl"
    base = ("--config", str(chaos_toml), "batch", str(inp), "--task", "ask", "--tier", "nano")
    base = (*base, "--out", str(out))
    r = tw(*base, "--workers", "0", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--workers" in r.stderr
    r = tw(*base, "--workers", "2", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["done"] == 60 and len(_rows(out)) == 60


def test_sigkill_of_the_batch_stops_its_workers_and_resume_asks_nothing_twice(tmp_path: Path) -> None:
    with ChaosServer(latency_s=0.05) as server:
        toml = tmp_path / "tierwise.toml"
        toml.write_text(chaos_config(server.base_url, f"sqlite:///{tmp_path}/ledger.db"))
        inp = _items(tmp_path / "in.jsonl", 400)
        out = tmp_path / "out.jsonl"
        cmd, proc = start_batch(tmp_path, toml, inp, out, "--concurrency", "10", "--workers", "2")
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 150):
            workers = workers or _children(proc.pid)
            time.sleep(0.05)
        workers = workers or _children(proc.pid)
        assert workers, "the batch started no worker process"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.05)
        assert not any(_alive(p) for p in workers), "a worker outlived its batch"
        finished = {x["id"] for x in _rows(out) if x["error"] is None}
        assert 0 < len(finished) < 400
        asked_before = _asked(server)
        r = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        asked_after = _asked(server)
        again = [i for i in finished if asked_after[f"ticket {i[1:]}"] != asked_before[f"ticket {i[1:]}"]]
        assert again == []
        rows = _rows(out)
        assert sorted({x["id"] for x in rows}) == sorted(f"t{i}" for i in range(400)) and len(rows) == 400


def test_a_worker_killed_mid_batch_is_one_line_and_resume_finishes(tmp_path: Path) -> None:
    with ChaosServer(latency_s=0.05) as server:
        toml = tmp_path / "tierwise.toml"
        toml.write_text(chaos_config(server.base_url, f"sqlite:///{tmp_path}/ledger.db"))
        inp = _items(tmp_path / "in.jsonl", 600)
        out = tmp_path / "out.jsonl"
        cmd, proc = start_batch(tmp_path, toml, inp, out, "--concurrency", "10", "--workers", "2")
        wait_rows(out, 150)
        (worker,) = _children(proc.pid)
        os.kill(worker, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        line = err.strip().splitlines()
        assert proc.returncode != 0 and len(line) == 1, err
        assert "worker process ended" in line[0] and "run the same command again" in line[0]
        r = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        rows = _rows(out)
        assert sorted({x["id"] for x in rows}) == sorted(f"t{i}" for i in range(600)) and len(rows) == 600
    with Ledger(Config.load(toml).ledger.url) as ledger:
        assert ledger.runs(limit=1)[0].status == "ok"


async def test_concurrency_above_the_default_fan_out_is_what_the_batch_gets(
    tmp_path: Path, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    # A run's default fan-out allows 50 nano calls (64 in all); a batch's own bound is --concurrency.
    chaos_server.set_script({"latency_s": 0.3})
    inp = _items(tmp_path / "in.jsonl", 240)
    async with Session(chaos_toml) as s:
        peak = PeakCalls(s.runtime)
        rep = await run_file(
            s, inp, tmp_path / "o.jsonl", BatchOptions(TaskSpec("ask", tier="nano"), concurrency=120)
        )
    assert rep.done == 240 and 100 < peak.peak <= 120


def test_ctrl_c_stops_the_batch_and_its_workers_within_seconds(tmp_path: Path) -> None:
    # 400 calls are answered (the worker has joined by then), then every call hangs until the signal.
    script = {
        "latency_s": 0.05,
        "rules": [{"times": 400, "reply": {"text": "ok"}}, {"fault": {"kind": "hang", "hang_s": 60}}],
    }
    with ChaosServer() as server:
        server.set_script(script)
        toml = tmp_path / "tierwise.toml"
        toml.write_text(
            chaos_config(server.base_url, f"sqlite:///{tmp_path}/ledger.db").replace(
                "timeout_s = 2.0", "timeout_s = 120.0"
            )
        )
        inp = _items(tmp_path / "in.jsonl", 2000)
        _, proc = start_batch(
            tmp_path, toml, inp, tmp_path / "out.jsonl", "--concurrency", "10", "--workers", "2"
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(server.requests("/v1/chat/completions")) < 410:
            time.sleep(0.05)
        time.sleep(0.3)
        workers = _children(proc.pid)
        assert workers, "the batch started no worker process"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        took = time.monotonic() - sent
        assert proc.returncode == 130 and took < 5.0, (took, err)
        assert "Traceback" not in err
        assert not any(_alive(p) for p in workers), "a worker outlived its batch"
        hung = len(server.requests("/v1/chat/completions")) - 400
    with Ledger(Config.load(toml).ledger.url) as ledger:
        run = ledger.runs(limit=1)[0]
        cut = [c for c in ledger.calls(run_id=run.id, limit=5000) if c.status == "interrupted"]
    assert run.status == "interrupted"
    # Both processes' calls cut in flight were sent (and may be billed): each is recorded.
    assert hung == 10 and len(cut) == hung


async def test_python_api_with_workers_keeps_order(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"latency_s": 0.05})
    texts = [f"x{i}" for i in range(300)]
    async with Session(chaos_toml) as s:
        batch = s.batch(texts, task="ask", tier="nano", workers=2, concurrency=10, ordered=True)
        got = [r async for r in batch]
    assert [(r["id"], r["result"]) for r in got] == [(str(i), f"echo: x{i}") for i in range(300)]
