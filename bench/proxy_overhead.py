"""Proxy overhead: what the tierwise proxy adds over a direct openai-SDK call, beside LiteLLM's proxy.

One run, one upstream (the chaos server in its own process, no added latency, so the overhead shows):
  - direct: the openai SDK against the upstream;
  - bare SDK forwarder: ``bench/bare_forwarder.py``, a Starlette app that passes requests on through the
    SDK and does nothing else (the floor of any Python proxy on the SDK, measured here);
  - tierwise: the same client against ``tierwise serve`` (``model="tierwise/auto"``: kind inferred, routed,
    key checked, budget reserved and committed, the call recorded in the SQLite ledger);
  - litellm: the same client against LiteLLM's proxy (``litellm --config``; no database, so no spend log)
    when the ``litellm[proxy]`` package is installed (the ``bench`` extra).
Latency per request p50/p99 sequentially and at 10 and 100 concurrent clients, the added latency over
direct (p50 and p99 differences), requests per second at 100 clients (saturation on 2 cores), and the CPU
the proxy process (with its children) spent per request, read from /proc. Each level runs ``--repeat``
times per target and the run with the lower p50 is kept (a neighbour's burst on a shared machine otherwise
decides the table).
Run: ``python -m bench.proxy_overhead [--requests 400] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

CONFIG = """
[ledger]
url = "sqlite:///{db}"

[providers.up]
kind = "openai"
base_url = "{url}"
api_key_env = "BENCH_UPSTREAM_KEY"
timeout_s = 30.0

[[models]]
id = "up/large"
provider = "up"
name = "large-model"
tier = "large"
input_per_mtok = 2.5
output_per_mtok = 15.0
context_window = 100000
max_output_tokens = 256

[[models]]
id = "up/mini"
provider = "up"
name = "mini-model"
tier = "mini"
input_per_mtok = 0.75
output_per_mtok = 4.5
context_window = 100000
max_output_tokens = 256

[[models]]
id = "up/nano"
provider = "up"
name = "nano-model"
tier = "nano"
input_per_mtok = 0.2
output_per_mtok = 1.25
context_window = 100000
max_output_tokens = 256

[tiers]
large = "up/large"
mini = "up/mini"
nano = "up/nano"
"""

LITELLM_CONFIG = """
model_list:
  - model_name: bench
    litellm_params:
      model: openai/nano-model
      api_base: {url}
      api_key: bench
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: {master}
"""
# LiteLLM's proxy refuses to start without a master key; with one it checks keys as ours does (no database).
LITELLM_MASTER = "sk-bench-master-0123456789abcdef"

PROMPT = "Classify this support ticket as billing, shipping or other: my card was charged twice."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` and its live descendants (Linux /proc); None elsewhere."""
    if pid is None or not Path("/proc/self/stat").exists():
        return None
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) * _TICK_S)
    tree, total = {pid}, 0.0
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in tree and child not in tree:
                tree.add(child)
                changed = True
    for member in tree:
        total += stats.get(member, (0, 0.0))[1]
    return total


@dataclass
class Load:
    latencies: list[float]
    wall_s: float
    cpu_s: float | None = None  # the proxy's CPU over the measured requests
    errors: int = 0  # requests that failed (counted for the peer; any failure of ours stops the bench)

    @property
    def cpu_ms_per_request(self) -> float | None:
        return None if self.cpu_s is None else self.cpu_s * 1000 / len(self.latencies)

    def pct(self, q: float) -> float:
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("inf")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall_s


async def drive(
    base_url: str, key: str, model: str, n: int, concurrency: int, pid: int | None, *, tolerate: bool = False
) -> Load:
    """``n`` requests from ``concurrency`` clients. ``tolerate``: a failed request is counted, not raised
    (the peer: LiteLLM's proxy drops upstream connections at 100 clients on this machine)."""
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key=key,
        max_retries=0,
        http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency + 10)),
    )
    latencies: list[float] = []
    errors = [0]
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            try:
                r = await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=16
                )
            except openai.OpenAIError:
                if not tolerate:
                    raise
                errors[0] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            assert r.choices, r

    for _ in range(min(20, n)):  # warm connections and caches
        await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=16
        )
    cpu0 = cpu_s(pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu1 = cpu_s(pid)
    await client.close()
    return Load(latencies, wall, None if cpu0 is None or cpu1 is None else cpu1 - cpu0, errors[0])


def first_request_ms(base_url: str, key: str) -> float:
    """The first ``tierwise/auto`` request a fresh server answers (what a cold start costs a client)."""
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0) as client:
        t0 = time.perf_counter()
        client.chat.completions.create(
            model="tierwise/auto", messages=[{"role": "user", "content": PROMPT}], max_tokens=16
        )
        return (time.perf_counter() - t0) * 1000


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="requests per level (×5 at 100 clients)")
    ap.add_argument("--levels", default="1,10,100")
    ap.add_argument("--repeat", type=int, default=2, help="runs per target and level; the lower p50 is kept")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="tw-proxy-bench-"))
    env = {**os.environ, "BENCH_UPSTREAM_KEY": "bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_port = free_port()
        procs.append(
            start([sys.executable, "-m", "tierwise.testing", "--port", str(up_port)], env, tmp / "up.log")
        )
        up = f"http://127.0.0.1:{up_port}/v1"
        wait_up(f"{up}/models", procs[-1])

        # (name, base url, key, model, the pid whose CPU is the proxy's: none for direct)
        targets: list[tuple[str, str, str, str, int | None]] = [("direct", up, "bench", "nano-model", None)]

        # The floor: what an SDK-based Python forwarder adds with no routing, key, budget or ledger.
        fw_port = free_port()
        fw_cmd = [sys.executable, "-m", "bench.bare_forwarder", up, str(fw_port)]
        procs.append(start(fw_cmd, env, tmp / "forwarder.log"))
        wait_up(f"http://127.0.0.1:{fw_port}/v1/models", procs[-1])
        fw = ("bare SDK forwarder", f"http://127.0.0.1:{fw_port}/v1", "bench", "nano-model", procs[-1].pid)
        targets.append(fw)

        toml = tmp / "tierwise.toml"
        toml.write_text(CONFIG.format(db=tmp / "ledger.db", url=up))
        tw = [sys.executable, "-m", "tierwise"]
        made = subprocess.run(
            [*tw, "--config", str(toml), "keys", "create", "bench"], env=env, capture_output=True, text=True
        )
        tw_port = free_port()
        if made.returncode == 0:  # the key alone on stdout, its notes on stderr
            key = made.stdout.strip()
            auth: list[str] = []
        else:  # no key command: serve without keys (loopback only)
            key, auth = "none", ["--no-auth"]
        procs.append(
            start([*tw, "serve", "--port", str(tw_port), "--config", str(toml), *auth], env, tmp / "tw.log")
        )
        t_start = time.perf_counter()
        wait_up(f"http://127.0.0.1:{tw_port}/v1/models", procs[-1])
        up_s = time.perf_counter() - t_start
        tw_url = f"http://127.0.0.1:{tw_port}/v1"
        tw_pid = procs[-1].pid
        first_ms = first_request_ms(tw_url, key)
        targets.append(("tierwise (auto)", tw_url, key, "tierwise/auto", tw_pid))
        targets.append(("tierwise (nano pinned)", tw_url, key, "tierwise/nano", tw_pid))
        targets.append(("tierwise (model id)", tw_url, key, "up/nano", tw_pid))

        litellm_bin = shutil.which("litellm") or str(Path(sys.executable).parent / "litellm")
        if Path(litellm_bin).exists():
            cfg = tmp / "litellm.yaml"
            cfg.write_text(LITELLM_CONFIG.format(url=up, master=LITELLM_MASTER))
            ll_port = free_port()
            procs.append(
                start(
                    [litellm_bin, "--config", str(cfg), "--port", str(ll_port), "--num_workers", "1"],
                    env,
                    tmp / "litellm.log",
                )
            )
            wait_up(f"http://127.0.0.1:{ll_port}/health/liveliness", procs[-1], timeout=180)
            ll = ("litellm proxy", f"http://127.0.0.1:{ll_port}", LITELLM_MASTER, "bench", procs[-1].pid)
            targets.append(ll)
        else:
            print("litellm proxy not installed (pip install 'tierwise[bench]'): peer column skipped")

        results: dict[tuple[str, int], Load] = {}
        for c in levels:
            n = args.requests * (5 if c >= 100 else 1)
            for name, url, k, model, pid in targets:
                for _ in range(max(1, args.repeat)):
                    try:
                        peer = name == "litellm proxy"
                        load = asyncio.run(drive(url, k, model, n, c, pid, tolerate=peer))
                    except Exception as exc:
                        raise RuntimeError(f"{name} at {c} clients failed ({exc!r}): logs in {tmp}") from exc
                    best = results.get((name, c))
                    if best is None or (load.errors, load.pct(0.5)) < (best.errors, best.pct(0.5)):
                        results[(name, c)] = load

        print(
            f"\nUpstream: chaos server, no added latency; {args.requests} requests per level (×5 at 100), "
            f"best p50 of {args.repeat}; cpu ms/req: the proxy process's CPU per request."
        )
        head = (
            "target",
            "clients",
            "p50 ms",
            "p99 ms",
            "+p50 ms",
            "+p99 ms",
            "req/s",
            "errors",
            " cpu ms/req",
        )
        print(f"{head[0]:<24}" + "".join(f"{h:>9}" for h in head[1:]))
        for c in levels:
            base = results[("direct", c)]
            for name, *_ in targets:
                r = results[(name, c)]
                add50 = r.pct(0.5) - base.pct(0.5)
                add99 = r.pct(0.99) - base.pct(0.99)
                cpu = r.cpu_ms_per_request
                print(
                    f"{name:<24}{c:>8}{r.pct(0.5):>9.2f}{r.pct(0.99):>9.2f}"
                    f"{add50:>9.2f}{add99:>9.2f}{r.rps:>9.0f}{r.errors:>9}"
                    + (f"{cpu:>11.2f}" if cpu is not None else "")
                )
        seq = levels[0]
        tw_add = results[("tierwise (auto)", seq)].pct(0.5) - results[("direct", seq)].pct(0.5)
        fw_add = results[("bare SDK forwarder", seq)].pct(0.5) - results[("direct", seq)].pct(0.5)
        summary = (
            f"tierwise proxy adds {tw_add:.2f} ms p50 sequential (auto routing, key, budget, ledger); "
            f"a bare SDK forwarder adds {fw_add:.2f} ms, so tierwise's own part is {tw_add - fw_add:.2f} ms"
        )
        if ("litellm proxy", seq) in results:
            ll_add = results[("litellm proxy", seq)].pct(0.5) - results[("direct", seq)].pct(0.5)
            below = all(
                (
                    results[("tierwise (auto)", c)].pct(q) < results[("litellm proxy", c)].pct(q)
                    and results[("tierwise (auto)", c)].rps > results[("litellm proxy", c)].rps
                )
                or results[("litellm proxy", c)].errors > 0  # a peer that fails requests is not better
                for c in levels
                for q in (0.5, 0.99)
            )
            summary += (
                f"; LiteLLM's proxy adds {ll_add:.2f} ms; tierwise better at every level "
                f"(p50, p99, req/s): {below}"
            )
        print(summary)
        print(
            f"tierwise serve: answering {up_s:.1f} s after launch (warm-up included); "
            f"its first tierwise/auto request {first_ms:.0f} ms"
        )
    except BaseException:
        keep = True
        raise
    else:
        keep = False
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not keep:  # a failed run keeps its servers' logs for the message above
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
