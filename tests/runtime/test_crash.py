"""A crash loses no paid call and no run: leases on runs, write-ahead intents, an unwritable ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierwise import Session
from tierwise.config import Config
from tierwise.errors import LedgerError
from tierwise.ledger import Ledger
from tierwise.ledger.leases import RunLocked
from tierwise.testing import ChaosServer

# A child process that opens a run, prints its id, then makes one call (which the test may leave hanging).
_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from tierwise import Session

    async def main() -> None:
        async with Session(sys.argv[1]) as s, s.run("probe", budget_usd=1.0) as scope:
            print(scope.id, flush=True)
            if sys.argv[2] == "call":
                await s.call("Classify: card stolen", kind="classify", run=scope)
            else:
                await asyncio.sleep(60)

    asyncio.run(main())
    """
)


@pytest.fixture()
def child(chaos_toml: Path) -> Iterator[callable]:
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(chaos_toml), mode],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "CHAOS_KEY": "x"},
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert run_id, "the child did not start its run"
        return proc, run_id

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped: a zombie would still look alive


async def test_a_second_process_cannot_take_a_running_run(chaos_toml: Path, child) -> None:
    proc, run_id = child("sleep")
    async with Session(chaos_toml) as s:
        with pytest.raises(RunLocked, match=rf"held by pid {proc.pid} on"):
            async with s.run("probe", run_id=run_id, resume=True):
                pass
    with Ledger(Config.load(chaos_toml).ledger.url) as ledger:
        assert ledger.get_run(run_id).status == "running"
        _kill(proc)
        # kill -9: the run is not left "running" forever.
        run = ledger.get_run(run_id)
        assert run.status == "interrupted" and "resume it" in (run.error or "")
    async with Session(chaos_toml) as s, s.run("probe", run_id=run_id, resume=True) as scope:
        assert scope.id == run_id
    with Ledger(Config.load(chaos_toml).ledger.url) as ledger:
        assert ledger.get_run(run_id).status == "ok"


async def test_a_call_in_flight_at_kill_is_recorded_interrupted_on_resume(
    chaos_toml: Path, chaos_server: ChaosServer, child
) -> None:
    chaos_server.set_script({"rules": [{"fault": {"kind": "hang", "hang_s": 30}}]})
    proc, run_id = child("call")
    deadline = time.monotonic() + 20
    while not chaos_server.requests("/v1/chat/completions") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert chaos_server.requests("/v1/chat/completions"), "the child never sent its call"
    _kill(proc)
    chaos_server.reset()
    async with Session(chaos_toml) as s, s.run("probe", run_id=run_id, resume=True) as scope:
        spent = scope.budget.spent_usd
    with Ledger(Config.load(chaos_toml).ledger.url) as ledger:
        calls = ledger.calls(run_id=run_id)
    assert [c.status for c in calls] == ["interrupted"]
    # Charged at the reservation (the worst case), and counted against the resumed run's cap.
    assert calls[0].cost_usd and calls[0].cost_usd > 0 and spent == pytest.approx(calls[0].cost_usd)
    assert calls[0].model == "chaos/nano"


async def test_an_unwritable_ledger_is_found_before_any_request(
    tmp_path: Path, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    db = tmp_path / "ledger.db"
    Ledger(f"sqlite:///{db}").close()
    toml = Config.load(chaos_toml)
    ro = f"sqlite:///file:{db}?mode=ro&uri=true"
    with pytest.raises(LedgerError, match="cannot write to the ledger"):
        async with Session(toml, ledger_url=ro) as s:
            await s.call("Classify: card stolen", kind="classify")
    assert chaos_server.requests("/v1/chat/completions") == []
