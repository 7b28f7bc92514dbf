"""Orchestration overhead: 1,000 nano steps at concurrency 50 against a 200 ms loopback server.

Compares, in one run: the ideal (N / C × latency), tierwise's DAG executor (every call routed,
budgeted, metered and recorded in a SQLite ledger, every step durable), plain asyncio + the openai SDK,
and LangGraph's Send map-reduce (when ``langgraph`` is importable).
Run: ``python -m bench.orchestration_overhead``.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import openai

from tierwise import Session
from tierwise.core import TaskKind, Tier
from tierwise.orchestration import ExecLimits, Executor, Plan, Step
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
id = "chaos/nano"
provider = "chaos"
name = "nano-model"
tier = "nano"
input_per_mtok = 0.05
output_per_mtok = 0.40
context_window = 100000
max_output_tokens = 64
capabilities = ["json_schema"]

[tiers]
large = "chaos/nano"
mini = "chaos/nano"
nano = "chaos/nano"
"""


class State(TypedDict):
    """LangGraph's state: module level, because it resolves the (string) annotations by name."""

    items: list[int]
    results: Annotated[list[str], operator.add]


class Item(TypedDict):
    i: int


def _prompt(i: int) -> str:
    return f"Classify item {i}: is this sentence about billing or shipping?"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def bench_tierwise(url: str, n: int, c: int, tmp: Path) -> tuple[float, list[float]]:
    toml = tmp / "tierwise.toml"
    toml.write_text(CONFIG.format(db=tmp / "ledger.db", url=url))
    plan = Plan(steps=[Step(id=f"s{i}", kind=TaskKind.CLASSIFY, instruction=_prompt(i)) for i in range(n)])
    limits = ExecLimits(per_tier={Tier.NANO: c, Tier.MINI: c, Tier.LARGE: c}, in_flight=c)
    fan_out = FanOut(per_tier=limits.per_tier, in_flight=limits.in_flight)
    async with Session(toml, budget_usd=100.0) as s:
        assert s.ledger is not None
        async with s.run("bench", "overhead warmup", fan_out=fan_out) as run:  # connections, imports warm
            await Executor(run, Plan(steps=plan.steps[:c]), limits=limits).execute()
        async with s.run("bench", "orchestration overhead", budget_usd=100.0, fan_out=fan_out) as run:
            ex = Executor(run, plan, goal="", limits=limits)  # every step routed by the policy (→ nano)
            start = time.perf_counter()
            await ex.execute()
            wall = time.perf_counter() - start
        calls = await asyncio.to_thread(s.ledger.calls, run.id)
        steps = await asyncio.to_thread(s.ledger.finished_steps, run.id)
    assert len(calls) == n and all(c.status == "ok" for c in calls), "every call is in the ledger"
    assert len(steps) == n, "every step is durable"
    return wall, [c.latency_ms / 1000 for c in calls]


async def bench_sdk(url: str, n: int, c: int) -> tuple[float, list[float]]:
    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    sem = asyncio.Semaphore(c)
    lat: list[float] = []

    async def one(i: int) -> str:
        async with sem:
            t = time.perf_counter()
            r = await client.chat.completions.create(
                model="nano-model", messages=[{"role": "user", "content": _prompt(i)}], max_tokens=64
            )
            lat.append(time.perf_counter() - t)
            return r.choices[0].message.content or ""

    await asyncio.gather(*(one(i) for i in range(c)))  # warm
    lat.clear()
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    await client.close()
    return wall, lat


async def bench_langgraph(url: str, n: int, c: int) -> tuple[float, list[float]] | None:
    try:
        from langgraph.graph import END, START, StateGraph
        from langgraph.types import Send
    except ImportError:
        return None
    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    lat: list[float] = []

    async def call(item: Item) -> dict[str, Any]:
        t = time.perf_counter()
        r = await client.chat.completions.create(
            model="nano-model", messages=[{"role": "user", "content": _prompt(item["i"])}], max_tokens=64
        )
        lat.append(time.perf_counter() - t)
        return {"results": [r.choices[0].message.content or ""]}

    def fan_out(state: State) -> list[Any]:
        return [Send("call", {"i": i}) for i in state["items"]]

    g = StateGraph(State)
    g.add_node("call", call)
    g.add_conditional_edges(START, fan_out, ["call"])
    g.add_edge("call", END)
    graph = g.compile()
    cfg: Any = {"max_concurrency": c, "recursion_limit": 10_000}
    await graph.ainvoke({"items": list(range(c)), "results": []}, cfg)  # warm
    lat.clear()
    start = time.perf_counter()
    out = await graph.ainvoke({"items": list(range(n)), "results": []}, cfg)
    wall = time.perf_counter() - start
    assert len(out["results"]) == n
    await client.close()
    return wall, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("-c", type=int, default=50)
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    n, c, latency = args.n, args.c, args.latency
    ideal = n / c * latency
    rows: list[tuple[str, float, list[float]]] = []
    with ChaosServer(latency_s=latency, in_process=False) as server, tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, Callable[[], Awaitable[tuple[float, list[float]] | None]]]] = [
            ("plain asyncio + openai SDK", lambda: bench_sdk(server.base_url, n, c)),
            (
                "tierwise executor (metered, budgeted, ledger)",
                lambda: bench_tierwise(server.base_url, n, c, Path(tmp)),
            ),
            ("LangGraph Send map-reduce", lambda: bench_langgraph(server.base_url, n, c)),
        ]
        for name, fn in runs:
            got = asyncio.run(fn())
            if got is None:
                print(f"({name}: langgraph is not installed; skipped)")
                continue
            rows.append((name, got[0], got[1]))
    print(f"\n{n} steps, concurrency {c}, server latency {latency * 1000:.0f} ms (loopback, subprocess)\n")
    print(f"{'path':<48} {'wall s':>8} {'× ideal':>8} {'p50 ms':>8} {'p99 ms':>8}")
    ms = latency * 1000
    print(f"{'ideal (N / C × latency)':<48} {ideal:>8.3f} {1.0:>8.3f} {ms:>8.1f} {ms:>8.1f}")
    for name, wall, lat in rows:
        p50, p99 = _pct(lat, 0.5) * 1000, _pct(lat, 0.99) * 1000
        print(f"{name:<48} {wall:>8.3f} {wall / ideal:>8.3f} {p50:>8.1f} {p99:>8.1f}")
    by = {name.split(" ")[0]: wall for name, wall, _ in rows}
    tw, sdk = by.get("tierwise"), by.get("plain")
    if tw is not None and sdk is not None:
        verdict = "meets" if tw <= 1.05 * ideal else "misses"
        print(
            f"\ntierwise: {tw / ideal:.3f}× ideal ({verdict} the 1.05× target), "
            f"{tw / sdk:.3f}× the bare SDK loop, with every call metered, budgeted and recorded."
        )


if __name__ == "__main__":
    main()
