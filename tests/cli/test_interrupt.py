"""Ctrl-C and SIGTERM as a user sends them: a real ``tierwise`` process whose model calls hang on the chaos
server. The process exits within seconds with code 130, says how to go on, and the ledger records the run
``interrupted`` (not ``running``); a second Ctrl-C quits at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer

HANG = {"rules": [{"fault": {"kind": "hang", "hang_s": 60}}]}


@pytest.fixture()
def workdir(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    # A long provider timeout: the call must still be in flight when the signal comes.
    toml = chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db").replace(
        "timeout_s = 2.0", "timeout_s = 120.0"
    )
    (tmp_path / "tierwise.toml").write_text(toml)
    chaos_server.set_script(HANG)
    return tmp_path


def _start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIERWISE_CONFIG")}
    return subprocess.Popen(
        [sys.executable, "-m", "tierwise", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_a_call(proc: subprocess.Popen[str], server: ChaosServer, timeout: float = 120) -> None:
    """Until a chat request hangs on the server (the run is open and a call is in flight)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.requests("/v1/chat/completions"):
            time.sleep(0.3)  # let any sibling calls start too
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {proc.communicate()[1]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no model call reached the chaos server")


def _interrupt(proc: subprocess.Popen[str], sig: int) -> tuple[float, str, str]:
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running 10 s after the signal: {err[-2000:]}") from None
    return time.monotonic() - sent, out, err


def _only_run(workdir: Path) -> tuple[str, str]:
    with Ledger(Config.load(workdir / "tierwise.toml").ledger.url) as ledger:
        runs = ledger.runs(limit=5)
    assert len(runs) == 1, runs
    return runs[0].id, runs[0].status


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_orchestrate_stops_within_seconds_and_can_be_resumed(
    workdir: Path, chaos_server: ChaosServer, sig: int
) -> None:
    proc = _start(workdir, "orchestrate", "List the TODOs", "--budget", "1")
    _wait_for_a_call(proc, chaos_server)
    took, out, err = _interrupt(proc, sig)
    assert proc.returncode == 130, err
    assert took < 3.0, f"took {took:.2f} s"
    run_id, status = _only_run(workdir)
    assert status == "interrupted"
    assert f"tierwise resume {run_id}" in err, err
    assert "Traceback" not in err and out == ""


def test_support_triage_interrupted_is_recorded_and_says_what_to_rerun(
    workdir: Path, chaos_server: ChaosServer
) -> None:
    (workdir / "tickets.jsonl").write_text(
        '{"text": "My card has not arrived yet"}\n{"text": "I was charged twice for a top-up"}\n'
    )
    (workdir / "labels.txt").write_text("card_arrival\ntop_up_failed\n")
    proc = _start(
        workdir,
        "run",
        "support-triage",
        "--input",
        "tickets.jsonl",
        "--labels",
        "labels.txt",
        "--out",
        "out.jsonl",
        "--json",
    )
    _wait_for_a_call(proc, chaos_server)
    took, out, err = _interrupt(proc, signal.SIGINT)
    assert proc.returncode == 130, err
    assert took < 3.0, f"took {took:.2f} s"
    run_id, status = _only_run(workdir)
    assert status == "interrupted"
    assert f"run {run_id} is recorded as interrupted" in err and "run the same command again" in err
    assert out == ""  # --json: nothing but the JSON document ever goes to stdout, and there is none
    # The calls cancelled in flight were sent (and may be billed): recorded, at their reserved cost.
    with Ledger(Config.load(workdir / "tierwise.toml").ledger.url) as ledger:
        cut = [c for c in ledger.calls(run_id=run_id) if c.status == "interrupted"]
    sent = len(chaos_server.requests("/v1/chat/completions"))
    assert sent >= 1 and len(cut) == sent and all((c.cost_usd or 0) > 0 for c in cut)


def test_a_second_ctrl_c_quits_at_once(workdir: Path, chaos_server: ChaosServer) -> None:
    proc = _start(workdir, "orchestrate", "List the TODOs")
    _wait_for_a_call(proc, chaos_server)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    seen = ""
    while "interrupting" not in seen:  # the first one was taken: the run is unwinding
        line = proc.stderr.readline()
        assert line, f"exited without saying it was interrupting: {seen}"
        seen += line
    took, _, err = _interrupt(proc, signal.SIGINT)
    assert proc.returncode == 130, seen + err
    assert "quitting now" in err or "is recorded as interrupted" in err, seen + err
    assert took < 1.0, f"took {took:.2f} s"


@pytest.mark.local_model
def test_ctrl_c_does_not_wait_for_the_local_model(tmp_path: Path) -> None:
    """A llama.cpp generation runs in a thread that cannot be cancelled: the process must not wait for it
    (it did, for as long as the queued generations took)."""
    pytest.importorskip("llama_cpp")
    proc = _start(tmp_path, "orchestrate", "List three risks of storing passwords in plain text")
    assert proc.stderr is not None
    seen = ""
    # The first progress line (after 1 s): a local generation is running, in whichever stage (a short
    # plan can finish within that second; every stage of the run is model calls).
    while " · " not in seen:
        line = proc.stderr.readline()
        assert line, f"exited before any progress line: {seen}"
        seen += line
    time.sleep(1.5)
    took, _, err = _interrupt(proc, signal.SIGINT)
    assert proc.returncode == 130, seen + err
    assert took < 3.0, f"took {took:.2f} s"
    assert "tierwise resume" in err
