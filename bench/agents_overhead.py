"""Agents SDK overhead: the same planner + 10 parallel executor agents (agents as tools, each with a function
tool) against a 200 ms loopback server, with the SDK's own chat-completions model and with tierwise's
provider (every call routed, budgeted, metered and recorded in a SQLite ledger), in one run.

22 model calls per workflow (planner: 2 turns; each executor: a tool turn and an answer). Reports wall
time and CPU (this process) per workflow and per model call, medians over ``--repeat`` alternating runs.
Run: ``python -m bench.agents_overhead``. Target: tierwise ≤ 1.05× the SDK's own model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    Model,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

from tierwise import Session
from tierwise.core import Tier
from tierwise.integrations.agents import provider
from tierwise.runtime import FanOut
from tierwise.testing import ChaosServer

CONFIG = """
[ledger]
url = "sqlite:///{db}"

[providers.chaos]
kind = "openai"
base_url = "{url}"
api_key_env = "BENCH_CHAOS_KEY"
timeout_s = 30.0

[[models]]
id = "chaos/large"
provider = "chaos"
name = "large-model"
tier = "large"
input_per_mtok = 2.50
output_per_mtok = 15.00
context_window = 100000
max_output_tokens = 256
capabilities = ["json_schema", "tools"]

[[models]]
id = "chaos/mini"
provider = "chaos"
name = "mini-model"
tier = "mini"
input_per_mtok = 0.75
output_per_mtok = 4.50
context_window = 100000
max_output_tokens = 256
capabilities = ["json_schema", "tools"]

[tiers]
large = "chaos/large"
mini = "chaos/mini"
nano = "chaos/mini"
"""
CALLS_PER_WORKFLOW = 2 + 10 * 2


def script(n: int) -> dict[str, Any]:
    """The planner fans out to every executor, each executor calls its tool once, then everyone answers."""
    rules: list[dict[str, Any]] = [
        {"match": {"system_contains": "You are the planner"}, "times": 1,
         "reply": {"tool_calls": [{"name": f"executor_{i}", "arguments": {"input": f"x{i}"}, "id": f"p{i}"}
                                  for i in range(n)]}},
        {"match": {"system_contains": "You are the planner"}, "reply": "All items done."},
    ]  # fmt: skip
    for i in range(n):
        call = {"name": "lookup", "arguments": {"key": f"k{i}"}, "id": f"e{i}"}
        rules.append(
            {
                "match": {"system_contains": f"You are executor {i}."},
                "times": 1,
                "reply": {"tool_calls": [call]},
            }
        )
        rules.append({"match": {"system_contains": f"You are executor {i}."}, "reply": f"item {i}: ok"})
    return {"rules": rules}


@function_tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def workflow(n: int, large: str | Model, mini: str | Model) -> Agent[Any]:
    executors = [
        Agent(
            name=f"executor_{i}",
            instructions=f"You are executor {i}. Use lookup.",
            tools=[lookup],
            model=mini,
        )
        for i in range(n)
    ]
    return Agent(
        name="planner",
        instructions="You are the planner. Give each item to its executor.",
        tools=[e.as_tool(f"executor_{i}", f"Executor {i}.") for i, e in enumerate(executors)],
        model=large,
    )


async def timed(coro_fn: Any) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    await coro_fn()
    return time.perf_counter() - wall0, time.process_time() - cpu0


async def bench(
    chaos: ChaosServer, db: Path, n: int, repeat: int, default_fan_out: bool
) -> dict[str, list[tuple[float, float]]]:
    url = chaos.base_url
    client = AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
    sdk_agent = workflow(
        n, OpenAIChatCompletionsModel("large-model", client), OpenAIChatCompletionsModel("mini-model", client)
    )
    tw_agent = workflow(n, "tierwise/auto", "tierwise/auto")
    out: dict[str, list[tuple[float, float]]] = {"sdk": [], "tierwise": []}
    toml = db.with_suffix(".toml")
    toml.write_text(CONFIG.format(db=db, url=url))
    async with Session(toml) as session:
        # Fan-out per tier admits all executors at once (tierwise's default caps mini at 8 concurrent calls,
        # which adds a latency round for the 9th and 10th: policy, not overhead; see --default-fan-out).
        fan_out = None if default_fan_out else FanOut(per_tier={Tier.LARGE: 4, Tier.MINI: n, Tier.NANO: 50})
        run_config = RunConfig(model_provider=provider(session, budget_usd=1.0, fan_out=fan_out))

        async def sdk() -> None:
            result = await Runner.run(sdk_agent, "Process the items.")
            assert result.final_output == "All items done.", result.final_output

        async def tierwise() -> None:
            result = await Runner.run(tw_agent, "Process the items.", run_config=run_config)
            assert result.final_output == "All items done.", result.final_output

        arms = {"sdk": sdk, "tierwise": tierwise}
        for fn in arms.values():  # warm-up: connections, imports, the ledger's first writes
            chaos.set_script(script(n))
            await timed(fn)
        for i in range(repeat):
            for arm in ("sdk", "tierwise") if i % 2 == 0 else ("tierwise", "sdk"):  # alternate: no order bias
                chaos.set_script(script(n))
                out[arm].append(await timed(arms[arm]))
        assert session.ledger is not None
        runs = [r for r in session.ledger.runs(limit=1000) if r.kind == "agents"]
        calls = session.ledger.calls(run_id=runs[0].id)
        tiers = sorted({(c.tier, c.task_kind) for c in calls})
        print(f"tierwise runs recorded: {len(runs)}; last run: {len(calls)} calls, (tier, kind) = {tiers}")
    await client.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--executors", type=int, default=10)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--default-fan-out", action="store_true", help="keep tierwise's per-tier fan-out caps")
    args = ap.parse_args()
    set_tracing_disabled(True)
    os.environ.setdefault("BENCH_CHAOS_KEY", "bench")
    calls = 2 + args.executors * 2
    with (
        ChaosServer(latency_s=args.latency, in_process=False) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        out = asyncio.run(
            bench(server, Path(tmp) / "ledger.db", args.executors, args.repeat, args.default_fan_out)
        )
    print(
        f"\nplanner + {args.executors} parallel executors, {calls} model calls per workflow, "
        f"server latency {args.latency * 1000:.0f} ms (loopback, subprocess), median of {args.repeat}\n"
    )
    print(f"{'arm':<42} {'wall s':>8} {'CPU s':>8} {'wall/call ms':>13} {'CPU/call ms':>12}")
    med: dict[str, tuple[float, float]] = {}
    for arm, label in (
        ("sdk", "Agents SDK's own OpenAI model"),
        ("tierwise", "tierwise provider (route+budget+ledger)"),
    ):
        wall = statistics.median(w for w, _ in out[arm])
        cpu = statistics.median(c for _, c in out[arm])
        med[arm] = (wall, cpu)
        print(
            f"{label:<42} {wall:>8.3f} {cpu:>8.3f} {wall / calls * 1000:>13.1f} {cpu / calls * 1000:>12.2f}"
        )
    wall_ratio = med["tierwise"][0] / med["sdk"][0]
    cpu_ratio = med["tierwise"][1] / med["sdk"][1]
    verdict = "meets" if wall_ratio <= 1.05 else "misses"
    extra_cpu_ms = (med["tierwise"][1] - med["sdk"][1]) / calls * 1000
    print(
        f"\ntierwise / SDK: wall {wall_ratio:.3f}×, CPU {cpu_ratio:.2f}× "
        f"({extra_cpu_ms:+.2f} ms CPU per call); {verdict} the ≤ 1.05× wall target"
    )


if __name__ == "__main__":
    main()
