"""Reliability under faults, with figures: ``python -m bench.chaos`` (writes docs/reliability.md).

Every scenario runs the real one path (routing, budgets, retries, fallback, breakers, ledger) against
our chaos server in a subprocess on loopback, and checks the ledger against what the server saw:

1. faults      N orchestration steps under ~20% injected faults (5xx, 429, dropped connections,
               malformed bodies): completed / failed (with reason) / lost, and the requests sent against
               the minimum the fault rate forces (N / (1 - p)); target ≤ 1.3×.
2. cap         200 concurrent calls on a cap that fits about 40 of them: overshoot (target 0).
3. kill -9     an orchestration killed mid-run, then resumed: finished steps redone (target 0) and paid
               calls unrecorded (server requests minus ledger records; target 0).
4. postgres    the PostgreSQL ledger restarted mid-run (when a local cluster is available).
5. outage      every model down: requests per call (≤ the call's retry budget) and per run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tierwise import ProviderError, Session
from tierwise.config import Config
from tierwise.core import TaskKind, Tier
from tierwise.errors import BudgetExceeded, TierwiseError
from tierwise.orchestration import ExecLimits, Executor, Plan, Step, StepOutcome
from tierwise.runtime import FanOut
from tierwise.testing import ChaosServer

ROOT = Path(__file__).resolve().parents[1]
SENT = ("ok", "error", "invalid_output", "rejected", "interrupted")  # statuses of requests that left

CONFIG = """
[ledger]
url = "{ledger}"

[providers.chaos]
kind = "openai"
base_url = "{url}"
api_key_env = "BENCH_CHAOS_KEY"
timeout_s = 5.0

[[models]]
id = "chaos/large"
provider = "chaos"
name = "large-model"
tier = "large"
input_per_mtok = 2.50
output_per_mtok = 15.00
context_window = 100000
max_output_tokens = 200

[[models]]
id = "chaos/mini"
provider = "chaos"
name = "mini-model"
tier = "mini"
input_per_mtok = 0.75
output_per_mtok = 4.50
context_window = 100000
max_output_tokens = 200

[[models]]
id = "chaos/nano"
provider = "chaos"
name = "nano-model"
tier = "nano"
input_per_mtok = 0.20
output_per_mtok = 1.25
context_window = 100000
max_output_tokens = 64

[tiers]
large = "chaos/large"
mini = "chaos/mini"
nano = "chaos/nano"

[retry]
max_attempts = 4
base_delay_s = 0.02
max_delay_s = 0.5
"""


def write_config(tmp: Path, url: str, ledger: str | None = None) -> Path:
    path = tmp / "tierwise.toml"
    path.write_text(CONFIG.format(url=url, ledger=ledger or f"sqlite:///{tmp / 'ledger.db'}"))
    return path


def faults(p: float) -> dict[str, Any]:
    """Four fault kinds, each with probability q, so that a request fails with probability ``p``."""
    kinds = ["http_500", "http_503", "drop", "malformed_json"]
    q = 1 - (1 - p) ** (1 / (len(kinds) + 1))
    schedule = [{"fault": {"kind": k}, "probability": q, "endpoints": ["chat"]} for k in kinds]
    schedule.append({"fault": {"kind": "rate_limit", "retry_after_s": 0.05}, "probability": q})
    return {"faults": schedule, "seed": 7}


def plan(n: int) -> Plan:
    return Plan(
        steps=[
            Step(id=f"s{i}", kind=TaskKind.CLASSIFY, instruction=f"Classify item {i}: billing or shipping?")
            for i in range(n)
        ]
    )


def limits(c: int) -> tuple[ExecLimits, FanOut]:
    per = {Tier.NANO: c, Tier.MINI: c, Tier.LARGE: c}
    return ExecLimits(per_tier=per, in_flight=c), FanOut(per_tier=per, in_flight=c)


def ledger_calls(toml: Path, run_id: str | None = None) -> list[Any]:
    from tierwise.ledger import Ledger

    with Ledger(Config.load(toml).ledger.url) as ledger:
        return ledger.calls(run_id=run_id)


# --- 1. faults ----------------------------------------------------------------------------------------


async def scenario_faults(server: ChaosServer, tmp: Path, n: int, p: float) -> dict[str, Any]:
    toml = write_config(tmp, server.base_url)
    server.reset()
    server.set_script(faults(p))
    ex_limits, fan_out = limits(50)
    failed: Counter[str] = Counter()
    started = time.perf_counter()
    async with Session(toml) as s, s.run("bench", "chaos faults", budget_usd=50.0, fan_out=fan_out) as run:
        ex = Executor(run, plan(n), limits=ex_limits)
        with contextlib.suppress(TierwiseError):  # failed steps are counted below, from the ledger
            await ex.execute()
        outcomes = ex.outcomes
    wall = time.perf_counter() - started
    from tierwise.ledger import Ledger

    with Ledger(Config.load(toml).ledger.url) as ledger:
        durable = {st.step_id: st for st in ledger.steps(run.id)}
    for st in durable.values():
        if st.status != "ok":
            failed[(st.error or "unknown")[:80]] += 1
    done = sum(1 for st in durable.values() if st.status == "ok")
    # A step that finished in memory but has no durable record would be lost to a resume.
    lost = sum(1 for sid, o in outcomes.items() if o.status == "ok" and sid not in durable)
    requests = len(server.requests("/v1/chat/completions"))
    recorded = [c for c in ledger_calls(toml, run.id) if c.status in SENT]
    minimum = n / (1 - p)
    return {
        "steps": n,
        "fault_rate": p,
        "completed": done,
        "failed": sum(failed.values()),
        "failed_reasons": dict(failed.most_common(5)),
        "not_run": n - done - sum(failed.values()),  # stopped by a failure: resumable
        "lost": lost,
        "requests": requests,
        "recorded": len(recorded),
        "unrecorded": requests - len(recorded),
        "amplification": requests / minimum,
        "wall_s": wall,
    }


# --- 2. cap -------------------------------------------------------------------------------------------


async def scenario_cap(server: ChaosServer, tmp: Path, calls: int = 200) -> dict[str, Any]:
    toml = write_config(tmp, server.base_url)
    server.reset()
    server.set_script({"latency_s": 0.05})
    spec = Config.load(toml).catalog.get("chaos/nano")
    worst = spec.worst_case_cost(60, spec.max_output_tokens) or 0.0
    cap = worst * 40
    refused = 0
    async with Session(toml) as s, s.run("bench", "chaos cap", budget_usd=cap) as run:

        async def one(i: int) -> None:
            nonlocal refused
            try:
                await s.call(f"Classify item {i}: billing or shipping?", kind="classify", run=run)
            except BudgetExceeded:
                refused += 1

        await asyncio.gather(*(one(i) for i in range(calls)))
    spent = sum(c.cost_usd or 0.0 for c in ledger_calls(toml, run.id))
    return {
        "calls": calls,
        "cap_usd": cap,
        "spent_usd": spent,
        "served": calls - refused,
        "refused": refused,
        "overshoot_usd": max(0.0, spent - cap),
    }


# --- 3. kill -9 then resume ---------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from bench.chaos import limits, plan
    from tierwise import Session
    from tierwise.orchestration import Executor

    async def main() -> None:
        ex_limits, fan_out = limits(20)
        async with Session(sys.argv[1]) as s:
            async with s.run("bench", "chaos kill", budget_usd=50.0, fan_out=fan_out) as run:
                print(run.id, flush=True)
                await Executor(run, plan(int(sys.argv[2])), limits=ex_limits).execute()

    asyncio.run(main())
    """
)


async def scenario_kill(server: ChaosServer, tmp: Path, n: int = 300, kill_at: float = 0.4) -> dict[str, Any]:
    toml = write_config(tmp, server.base_url)
    server.reset()
    server.set_script({"latency_s": 0.1})
    env = {**os.environ, "BENCH_CHAOS_KEY": "x", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(toml), str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    # Kill once a good part of the plan has been sent, with calls certainly in flight.
    deadline = time.monotonic() + 120
    while len(server.requests("/v1/chat/completions")) < n * kill_at and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = len(server.requests("/v1/chat/completions"))
    ex_limits, fan_out = limits(20)
    async with Session(toml) as s, s.run("bench", run_id=run_id, resume=True, fan_out=fan_out) as run:
        finished_before = dict(run.finished)
        done = {k: StepOutcome.from_record(v) for k, v in finished_before.items()}
        await Executor(run, plan(n), limits=ex_limits).execute(done)
    calls = ledger_calls(toml, run_id)
    ok_steps: Counter[str] = Counter(c.step_id for c in calls if c.status == "ok")
    redone = sum(1 for sid in finished_before if ok_steps[sid] > 1)
    requests = len(server.requests("/v1/chat/completions"))
    recorded = [c for c in calls if c.status in SENT]
    return {
        "steps": n,
        "finished_before_kill": len(finished_before),
        "requests_before_kill": before,
        "interrupted_calls": sum(1 for c in calls if c.status == "interrupted"),
        "finished_steps_redone": redone,
        "requests": requests,
        "recorded": len(recorded),
        "paid_unrecorded": requests - len(recorded),
        "all_steps_done": sum(1 for sid in ok_steps if sid) >= n,
    }


# --- 4. PostgreSQL restarted mid-run -------------------------------------------------------------------


def _pg_cluster() -> tuple[str, str] | None:
    try:
        out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3] == "online":
            return parts[0], parts[1]
    return None


async def scenario_postgres(server: ChaosServer, tmp: Path, url: str, n: int = 400) -> dict[str, Any] | None:
    cluster = _pg_cluster()
    if cluster is None:
        return None
    toml = write_config(tmp, server.base_url, ledger=url)
    server.reset()
    server.set_script({"latency_s": 0.05})
    ex_limits, fan_out = limits(20)

    async def restart() -> float:
        await asyncio.sleep(1.0)
        t = time.perf_counter()
        await asyncio.to_thread(
            subprocess.run, ["pg_ctlcluster", *cluster, "restart"], check=True, capture_output=True
        )
        return time.perf_counter() - t

    error = None
    async with Session(toml) as s, s.run("bench", "chaos postgres", budget_usd=50.0, fan_out=fan_out) as run:
        ex = Executor(run, plan(n), limits=ex_limits)
        restarting = asyncio.create_task(restart())
        try:
            await ex.execute()
        except TierwiseError as exc:
            error = str(exc)[:120]
        down_s = await restarting
        outcomes = ex.outcomes
    done = sum(1 for o in outcomes.values() if o.status == "ok")
    requests = len(server.requests("/v1/chat/completions"))
    recorded = [c for c in ledger_calls(toml, run.id) if c.status in SENT]
    return {
        "steps": n,
        "restart_s": down_s,
        "completed": done,
        "failed": n - done,
        "requests": requests,
        "recorded": len(recorded),
        "paid_unrecorded": requests - len(recorded),
        "error": error,
    }


# --- 5. outage ----------------------------------------------------------------------------------------


async def scenario_outage(server: ChaosServer, tmp: Path, calls: int = 100) -> dict[str, Any]:
    toml = write_config(tmp, server.base_url)
    server.reset()
    server.set_script({"faults": [{"fault": "http_503", "probability": 1.0}]})
    retry = Config.load(toml).retry
    async with Session(toml) as s, s.run("bench", "chaos outage") as run:

        async def one(i: int) -> None:
            with contextlib.suppress(ProviderError):
                await s.call(f"Classify item {i}", kind="classify", run=run)

        await asyncio.gather(*(one(i) for i in range(calls)))
    by_model = Counter(r["body"]["model"] for r in server.requests("/v1/chat/completions"))
    total = sum(by_model.values())
    return {
        "calls": calls,
        "requests": total,
        "per_call": total / calls,
        "call_budget": retry.max_requests_per_call,
        "run_bound": calls + retry.run_min_retries + retry.run_retry_ratio * calls,
        "to_large": by_model.get("large-model", 0),
        "by_model": dict(by_model),
    }


# --- report -------------------------------------------------------------------------------------------


def report(r: dict[str, Any]) -> str:
    f, cap, k, o, pg = r["faults"], r["cap"], r["kill"], r["outage"], r.get("postgres")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability figures",
        "",
        f"Generated by `python -m bench.chaos` on {now}, {os.cpu_count()} cores; the chaos server runs",
        "in a subprocess on loopback, the ledger is SQLite unless said otherwise. Regenerate with the",
        "same command.",
        "",
        "| scenario | figure | target | result |",
        "|---|---|---|---|",
        f"| {f['steps']} steps, {f['fault_rate']:.0%} faults | completed {f['completed']}, failed "
        f"{f['failed']}, not run {f['not_run']}, lost {f['lost']} | 0 lost | {_ok(f['lost'] == 0)} |",
        f"| | requests {f['requests']} vs minimum {f['steps'] / (1 - f['fault_rate']):.0f}: "
        f"amplification {f['amplification']:.2f}× | ≤ 1.3× | {_ok(f['amplification'] <= 1.3)} |",
        f"| | server requests {f['requests']}, ledger records {f['recorded']} | equal | "
        f"{_ok(f['unrecorded'] == 0)} |",
        f"| {cap['calls']} concurrent calls, cap ${cap['cap_usd']:.6f} | served {cap['served']}, refused "
        f"{cap['refused']}, spent ${cap['spent_usd']:.6f}, overshoot ${cap['overshoot_usd']:.6f} | 0 | "
        f"{_ok(cap['overshoot_usd'] == 0)} |",
        f"| kill -9 of a {k['steps']}-step orchestration, then resume | {k['finished_before_kill']} steps "
        f"finished before the kill, {k['finished_steps_redone']} redone; {k['interrupted_calls']} calls "
        f"in flight recorded as interrupted | 0 redone | {_ok(k['finished_steps_redone'] == 0)} |",
        f"| | server requests {k['requests']}, ledger records {k['recorded']} | 0 unrecorded | "
        f"{_ok(k['paid_unrecorded'] <= 0)} |",
    ]
    if pg is not None:
        lines.append(
            f"| PostgreSQL restarted mid-run ({pg['restart_s']:.1f} s), {pg['steps']} steps | completed "
            f"{pg['completed']}, failed {pg['failed']}; requests {pg['requests']}, records {pg['recorded']} "
            f"| 0 unrecorded | {_ok(pg['paid_unrecorded'] <= 0)} |"
        )
    else:
        lines.append("| PostgreSQL restarted mid-run | no local cluster (pg_lsclusters) | — | skipped |")
    lines += [
        f"| outage, {o['calls']} calls | {o['requests']} requests ({o['per_call']:.2f} per call), "
        f"{o['to_large']} to large | ≤ {o['call_budget']} per call, ≤ {o['run_bound']:.0f} per run, 0 to "
        f"large | {_ok(o['per_call'] <= o['call_budget'] and o['requests'] <= o['run_bound'])} |",
        "",
        "Failed steps under faults, by reason: "
        + (", ".join(f"{n} × {why!r}" for why, n in f["failed_reasons"].items()) or "none")
        + ".",
        "",
        "Minimum requests: a request fails with probability p, so a step needs 1 / (1 - p) requests on",
        'average; amplification is what tierwise sent over that. "Lost" is a step neither completed nor',
        'failed with a reason; "unrecorded" is a request the server saw with no call record in the ledger.',
        "",
    ]
    return "\n".join(lines)


def _ok(cond: bool) -> str:
    return "met" if cond else "**missed**"


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("BENCH_CHAOS_KEY", "x")
    out: dict[str, Any] = {}
    with ChaosServer(in_process=False) as server:
        for name, make in (
            ("faults", lambda t: scenario_faults(server, t, args.steps, args.fault_rate)),
            ("cap", lambda t: scenario_cap(server, t)),
            ("kill", lambda t: scenario_kill(server, t)),
            ("outage", lambda t: scenario_outage(server, t)),
        ):
            with tempfile.TemporaryDirectory() as tmp:
                out[name] = await make(Path(tmp))
                print(f"{name}: {out[name]}", flush=True)
        if args.postgres:
            with tempfile.TemporaryDirectory() as tmp:
                out["postgres"] = await scenario_postgres(server, Path(tmp), args.postgres)
                print(f"postgres: {out['postgres']}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--fault-rate", type=float, default=0.2)
    ap.add_argument(
        "--postgres",
        default=os.environ.get("TIERWISE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL ledger URL to restart mid-run (the cluster is restarted with pg_ctlcluster); "
        "'' to skip",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = ap.parse_args()
    results = asyncio.run(run_all(args))
    text = report(results)
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
