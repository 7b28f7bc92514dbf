"""Batch throughput. (a) Banking77-style classification with --examples on the embedded default, local
executor (and Ray with --ray): items/s and accuracy for the classifier's static-only, e5-only and hybrid
paths, peak RSS at 10k and 100k items. (b) 10,000 calls to a 200 ms loopback server at concurrency 50:
wall time against the ideal and the bare openai-SDK loop, in the same run, with each item's kind inferred
and with the kind stated.

    python -m bench.batch_throughput [--items 100000] [--calls 10000] [--ray]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.proxy_overhead import CONFIG, free_port, wait_up
from tierwise.scale import BatchOptions, TaskSpec, run_file
from tierwise.session import Session

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

PER_CLASS = 40  # labelled examples per intent; the rest of Banking77 is held back for accuracy


def _data(root: Path, n_items: int) -> tuple[Path, Path, dict[str, str]]:
    with (SHARED_DATA / "intents" / "banking77" / "train.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    random.Random(0).shuffle(rows)
    seen: dict[str, int] = {}
    examples, held = [], []
    for r in rows:
        if seen.get(r["category"], 0) < PER_CLASS:
            examples.append(r)
            seen[r["category"]] = seen.get(r["category"], 0) + 1
        else:
            held.append(r)
    ex = root / "examples.csv"
    with ex.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        w.writerows([r["text"], r["category"]] for r in examples)
    items, truth = root / f"items{n_items}.jsonl", {}
    with items.open("w") as f:
        for i in range(n_items):
            r = held[i % len(held)]  # Banking77 holds ~7k held-back texts: larger runs cycle through them
            truth[str(i)] = r["category"]
            f.write(json.dumps({"id": str(i), "text": r["text"]}) + "\n")
    return ex, items, truth


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def part_a(root: Path, n: int, modes: list[str], executor: str) -> list[tuple]:
    ex, items, truth = _data(root, n)
    rows = []
    async with Session() as s:
        clf = await s.classifier(ex)
        for mode in modes:
            model = clf.model
            if mode == "static":
                model = dataclasses.replace(
                    model, fast_threshold=float("-inf"), static_oos_threshold=float("-inf")
                )
            elif mode == "e5":
                model = dataclasses.replace(model, fast_threshold=float("inf"))
            clf_m = type(clf)(model)
            out = root / f"out-{mode}-{n}-{executor}.jsonl"
            spec = TaskSpec("classify", classifier=clf_m)
            t = time.perf_counter()
            rep = await run_file(
                s, items, out, BatchOptions(spec, executor=executor), key_extra={"mode": mode}
            )  # type: ignore[arg-type]
            wall = time.perf_counter() - t
            rss = _rss_mb()  # before scoring: reading the output back is the bench's memory, not the batch's
            right = sent = total = 0
            with out.open() as f:
                for line in f:
                    r = json.loads(line)
                    right += r["result"] == truth[r["id"]]
                    sent += r["model"] != "local/static-classifier"
                    total += 1
            rows.append(
                (mode, executor, n, rep.done / wall, right / max(total, 1), sent / max(total, 1), rss)
            )
    return rows


async def zero_shot(root: Path, n_embed: int, n_llm: int) -> list[tuple]:
    """Classify with --labels alone (the 77 intent names, underscores as spaces) on held-back items: e5
    similarity to the label names against the embedded nano model under a grammar."""
    _, items, truth = _data(root, max(n_embed, n_llm))
    labels = tuple(sorted(set(truth.values())))
    rows = []
    async with Session() as s:
        for how, n in (("embed", n_embed), ("llm", n_llm)):
            if n <= 0:
                continue
            sub = root / f"zs-{how}.jsonl"
            sub.write_text("".join(items.read_text().splitlines(keepends=True)[:n]))
            out = root / f"zs-out-{how}.jsonl"
            spec = TaskSpec("classify", labels=labels, zero_shot=how, tier="nano")  # type: ignore[arg-type]
            t = time.perf_counter()
            rep = await run_file(s, sub, out, BatchOptions(spec, concurrency=2))
            wall = time.perf_counter() - t
            got = [json.loads(x) for x in out.read_text().splitlines()]
            acc = sum(r["result"] == truth[r["id"]] for r in got) / max(len(got), 1)
            rows.append((how, n, rep.done / wall, acc, rep.failed))
    return rows


ARMS = (  # (name, --kind, --workers)
    ("tierwise, kinds inferred", None, 1),
    ("tierwise, --kind stated", "preprocess", 1),
    ("tierwise, kinds inferred, --workers 2", None, 2),
    ("tierwise, --kind stated, --workers 2", "preprocess", 2),
)


@dataclasses.dataclass
class Arm:
    name: str
    wall_s: float
    latencies_ms: list[float]  # per call, as the client (or tierwise's ledger) measured it

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def part_b(calls: int, c: int = 50) -> tuple[float, list[Arm]]:
    """``calls`` requests at concurrency ``c`` to a loopback server answering in 200 ms (its own process,
    so its CPU is not the client's). Baselines in the same run: aiohttp posting JSON with no SDK (the floor
    of any Python client here), the bare openai-SDK loop (its default httpx transport, then aiohttp). Then
    ``tierwise batch --tier nano``: each item's kind inferred (cold: loading the kind classifier is timed)
    and stated (``--kind preprocess``: no classifier), in one process and with ``--workers 2`` (a worker
    process takes about half of the calls; its start is timed)."""
    import aiohttp
    import openai

    port = free_port()
    env = {**os.environ, "BENCH_UPSTREAM_KEY": "x"}
    cmd = [sys.executable, "-m", "tierwise.testing", "--port", str(port), "--latency", "0.2"]
    upstream = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    arms: list[Arm] = []
    try:
        wait_up(f"{url}/models", upstream)
        with tempfile.TemporaryDirectory() as d:
            ideal = calls / c * 0.2
            sem = asyncio.Semaphore(c)

            async def timed(name: str, call: Any) -> None:
                lat: list[float] = []

                async def one(i: int) -> None:
                    async with sem:
                        t0 = time.perf_counter()
                        await call(i)
                        lat.append((time.perf_counter() - t0) * 1000)

                t = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(calls)))
                arms.append(Arm(name, time.perf_counter() - t, lat))

            async with aiohttp.ClientSession() as http:

                async def raw(i: int) -> None:
                    body = {"model": "nano-model", "messages": [{"role": "user", "content": f"item {i}"}]}
                    async with http.post(f"{url}/chat/completions", json=body) as r:
                        json.loads(await r.read())

                await timed("aiohttp, no SDK (floor)", raw)
            transports = (("bare SDK", None), ("bare SDK on aiohttp", openai.DefaultAioHttpClient()))
            for name, transport in transports:
                client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0, http_client=transport)

                async def sdk(i: int, client: Any = client) -> None:
                    await client.chat.completions.create(
                        model="nano-model", messages=[{"role": "user", "content": f"item {i}"}]
                    )

                await timed(name, sdk)
                await client.close()
            toml = Path(d) / "tierwise.toml"
            toml.write_text(CONFIG.format(db=Path(d) / "ledger.db", url=url))
            os.environ["BENCH_UPSTREAM_KEY"] = "x"
            inp = Path(d) / "in.jsonl"
            inp.write_text(
                "".join(json.dumps({"id": str(i), "text": f"item {i}"}) + "\n" for i in range(calls))
            )
            for name, kind, workers in ARMS:
                async with Session(toml) as s:
                    spec = TaskSpec("ask", tier="nano", kind=kind)
                    out = Path(d) / f"out-{kind}-{workers}.jsonl"
                    t = time.perf_counter()
                    rep = await run_file(s, inp, out, BatchOptions(spec, concurrency=c, workers=workers))
                    wall = time.perf_counter() - t
                    assert rep.done == calls and rep.failed == 0, rep
                    assert s.ledger is not None
                    lat = [x.latency_ms for x in s.ledger.calls(run_id=rep.run_id, limit=calls + 10)]
                    arms.append(Arm(name, wall, lat))
                    if workers > 1:
                        print(f"    ({name}: the worker process made {rep.by_workers} of {rep.done} calls)")
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
    return ideal, arms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--modes", default="static,hybrid,e5")
    ap.add_argument("--ray", action="store_true")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--concurrency", type=int, default=50, help="(b): calls in flight")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--zero-shot", type=int, default=0, help="also zero-shot --labels: N items (LLM: N/4)")
    args = ap.parse_args()
    if args.zero_shot:
        with tempfile.TemporaryDirectory() as d:
            zs = asyncio.run(zero_shot(Path(d), args.zero_shot, max(args.zero_shot // 4, 1)))
        print(f"{'zero-shot':10} {'items':>6} {'items/s':>8} {'accuracy':>9} {'errors':>7}")
        for how, n, rate, acc, failed in zs:
            print(f"{how:10} {n:>6} {rate:>8.1f} {acc:>9.3f} {failed:>7}")
    rows: list[tuple] = []
    if not args.skip_a:
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            rows = asyncio.run(part_a(root, min(10_000, args.items), args.modes.split(","), "local"))
            if args.items > 10_000:
                rows += asyncio.run(part_a(root, args.items, ["hybrid"], "local"))
            if args.ray:
                rows += asyncio.run(part_a(root, min(10_000, args.items), ["hybrid"], "ray"))
        print(
            f"{'mode':8} {'executor':8} {'items':>7} {'items/s':>9} {'accuracy':>9} {'to e5':>6} "
            f"{'peak RSS MB':>12}"
        )
        for mode, ex, n, rate, acc, esc, rss in rows:
            print(f"{mode:8} {ex:8} {n:>7} {rate:>9.0f} {acc:>9.3f} {esc:>6.1%} {rss:>12.0f}")
    if not args.skip_b:
        ideal, arms = asyncio.run(part_b(args.calls, args.concurrency))
        base = {a.name: a.wall_s for a in arms}
        bare, bare_aio = base["bare SDK"], base["bare SDK on aiohttp"]
        print(f"(b) {args.calls} calls @200 ms, c={args.concurrency}: ideal {ideal:.1f}s")
        print(
            f"    {'':40} {'wall s':>7} {'x ideal':>8} {'x bare SDK':>11} {'x SDK aiohttp':>14} "
            f"{'p50 ms':>7} {'p99 ms':>7}"
        )
        for a in arms:
            print(
                f"    {a.name:40} {a.wall_s:>7.1f} {a.wall_s / ideal:>8.3f} {a.wall_s / bare:>11.3f} "
                f"{a.wall_s / bare_aio:>14.3f} {a.pct(0.5):>7.1f} {a.pct(0.99):>7.1f}"
            )
    if rows:
        best = max(rows, key=lambda r: r[3])
        print(f"summary: best {best[0]} {best[3]:.0f} items/s at accuracy {best[4]:.3f}")


if __name__ == "__main__":
    main()
