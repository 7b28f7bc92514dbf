"""Resume: a real process is killed (SIGKILL) mid-run; resuming pays only for the steps left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tierwise import Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer

from .test_orchestrate import plan_script

PLAN = {
    "steps": [
        {"id": "one", "kind": "extract", "instruction": "STEP_ONE", "depends_on": []},
        {"id": "two", "kind": "extract", "instruction": "STEP_TWO", "depends_on": []},
        {"id": "slow", "kind": "extract", "instruction": "STEP_SLOW", "depends_on": []},
        {"id": "last", "kind": "extract", "instruction": "STEP_LAST", "depends_on": ["slow", "one"]},
    ]
}

CHILD = """
import asyncio, sys
from tierwise import Session
from tierwise.orchestration import Options, orchestrate

async def main():
    async with Session(sys.argv[1]) as s:
        # a high threshold keeps the over-decomposition guard from merging the tiny test steps
        await s.orchestrate("Four steps, one slow", options=Options(overhead_threshold=50.0))

asyncio.run(main())
"""


def _count(server: ChaosServer, marker: str) -> int:
    return sum(marker in json.dumps(r["body"]) for r in server.requests("/v1/chat/completions"))


def _wait_for_steps(url: str, want: set[str], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with Ledger(url) as ledger:
                runs = ledger.runs(1)
                if runs and want <= set(ledger.finished_steps(runs[0].id)):
                    return runs[0].id
        except Exception:  # the child may still be creating the database
            pass
        time.sleep(0.1)
    raise AssertionError(f"steps {want} did not finish in {timeout} s")


async def test_resume_after_sigkill_pays_only_for_what_is_left(
    chaos_toml: Path, chaos_server: ChaosServer, tmp_path: Path
) -> None:
    slow = {"match": {"user_contains": "STEP_SLOW"}, "latency_s": 60, "reply": {"text": "slow done"}}
    chaos_server.set_script(plan_script(plan=PLAN, extra=[slow]))
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    url = Config.load(chaos_toml).ledger.url
    proc = subprocess.Popen(
        [sys.executable, str(child), str(chaos_toml)], env={**os.environ, "CHAOS_KEY": "x"}
    )
    try:
        run_id = _wait_for_steps(url, {"__plan__", "one", "two"})
        assert _count(chaos_server, "STEP_SLOW") == 1  # in flight
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {m: _count(chaos_server, m) for m in ("You are the planner", "STEP_ONE", "STEP_TWO")}
    assert before == {"You are the planner": 1, "STEP_ONE": 1, "STEP_TWO": 1}

    chaos_server.set_script(plan_script(plan=PLAN))  # the slow step answers at once now
    chaos_server_log = len(chaos_server.requests("/v1/chat/completions"))
    async with Session(chaos_toml) as s:
        result = await s.orchestrate(resume_run_id=run_id[:10])
    assert result.run_id == run_id and result.resumed
    assert result.answer == "three TODOs, one risky"
    new = chaos_server.requests("/v1/chat/completions")[chaos_server_log:]
    sent = [json.dumps(r["body"]) for r in new]
    # planner, one and two are not called again; slow, last and the synthesis are
    assert not any(m in b for b in sent for m in ("You are the planner", "STEP_ONE", "STEP_TWO"))
    assert sum("STEP_SLOW" in b and "STEP_LAST" not in b for b in sent) == 1
    assert sum("STEP_LAST" in b for b in sent if "final answer" not in b) == 1
    assert {st["id"]: st["status"] for st in result.steps} == {
        "one": "resumed",
        "two": "resumed",
        "slow": "ok",
        "last": "ok",
    }
    with Ledger(url) as ledger:
        assert ledger.get_run(run_id).status == "ok"
        assert set(ledger.finished_steps(run_id)) == {"__plan__", "one", "two", "slow", "last", "__final__"}
