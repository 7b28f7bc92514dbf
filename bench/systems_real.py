"""The five systems on fixed real inputs, on the embedded default: ``python -m bench.systems_real``.

Each system runs as a user runs it (``tierwise run SYSTEM ... --json`` in its own process, no key, no
network) on material nobody here wrote:

- pr-review:        a real multi-file change of pypa/packaging (26.3 → 26.4: five files), taken from two
                    releases installed here (pip vendors 26.3; the venv has 26.4) and committed to a repo.
- coding-assistant: "where are timeouts configured?" over the installed httpx source tree.
- research:         a docs folder made of the long descriptions (README) of installed packages.
- support-triage:   50 held-out Banking77 tickets with a small knowledge base (../shared/data).
- computer-use:     the loopback web app of the tests (an order form), real headless Chromium.

Figures per system: wall time, peak memory (the child's max RSS), calls and cost per tier, the
all-large counterfactual, the run's status and exit code. Code search recall@5 has its own benchmark
(``python -m bench.code_search``). Use ``--only NAME`` to run one system.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "intents" / "banking77"
SYSTEMS = ("pr-review", "coding-assistant", "research", "support-triage", "computer-use")
PACKAGING_FILES = ("__init__.py", "errors.py", "utils.py", "_structures.py", "_manylinux.py")
DOC_PACKAGES = ("httpx", "rich", "typer", "pydantic", "sqlalchemy", "jsonschema", "uvicorn", "openai")


def _site() -> Path:
    import packaging

    return Path(packaging.__file__).resolve().parents[1]


def _git(repo: Path, *args: str) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(repo), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def pr_repo(tmp: Path) -> Path:
    """A repo whose main holds packaging 26.3's files and whose HEAD is the change to 26.4."""
    site, repo = _site(), tmp / "packaging"
    (repo / "packaging").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "bench@example.invalid")
    _git(repo, "config", "user.name", "bench")
    for name in PACKAGING_FILES:
        shutil.copy(site / "pip" / "_vendor" / "packaging" / name, repo / "packaging" / name)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "packaging 26.3")
    _git(repo, "checkout", "-q", "-b", "upgrade")
    for name in PACKAGING_FILES:
        shutil.copy(site / "packaging" / name, repo / "packaging" / name)
    _git(repo, "commit", "-q", "-am", "packaging 26.4")
    return repo


def httpx_repo(tmp: Path) -> Path:
    import httpx

    repo = tmp / "httpx-src"
    shutil.copytree(Path(httpx.__file__).parent, repo / "httpx", ignore=shutil.ignore_patterns("__pycache__"))
    _git(repo, "init", "-q")
    return repo


def docs_folder(tmp: Path) -> Path:
    docs = tmp / "docs"
    docs.mkdir()
    for name in DOC_PACKAGES:
        try:
            body = md.metadata(name).get_payload()  # type: ignore[attr-defined]
        except md.PackageNotFoundError:
            continue
        if body and len(body) > 500:
            (docs / f"{name}.md").write_text(body[:20_000], encoding="utf-8")
    return docs


def triage_inputs(tmp: Path, n: int = 50) -> tuple[Path, Path, Path]:
    """n held-out tickets (seeded), the rest as labelled examples, and a two-page knowledge base."""
    with (DATA / "train.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(0)
    held = set(rng.choice(len(rows), size=n, replace=False).tolist())
    tickets, examples = tmp / "tickets.csv", tmp / "examples.csv"
    with tickets.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text"])
        w.writerows([[rows[i]["text"]] for i in sorted(held)])
    with examples.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "category"])
        w.writerows([[r["text"], r["category"]] for i, r in enumerate(rows) if i not in held])
    kb = tmp / "kb"
    kb.mkdir()
    (kb / "cards.md").write_text(
        "# Cards\n\nA lost or stolen card must be frozen at once in the app (Cards > Freeze). A new card "
        "arrives in 3-5 working days; delivery can be tracked in the app. Contactless works after the "
        "first chip-and-PIN payment. A declined payment is most often a frozen card, a wrong PIN or an "
        "online payment blocked in the card's security settings.\n",
        encoding="utf-8",
    )
    (kb / "transfers.md").write_text(
        "# Transfers and top-ups\n\nBank transfers arrive within 1 working day; SEPA can take 2. A pending "
        "top-up by card completes within minutes; a transfer top-up within a working day. A payment that "
        "was reverted comes back to the balance within 5 working days. Exchange rates are the interbank "
        "rate plus the fee shown before you confirm.\n",
        encoding="utf-8",
    )
    return tickets, examples, kb


def _run(args: list[str], cwd: Path, timeout: float) -> dict[str, Any]:
    """Run one CLI command; wall time, exit code, the child's peak RSS, stdout JSON when it parses."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tierwise", *args], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    wall = time.perf_counter() - start
    # The child is reaped by communicate(); RUSAGE_CHILDREN holds the largest RSS of any child so far,
    # so the runs go in increasing order of expected size or each in a fresh parent (--only).
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    try:
        payload = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        payload = None
    return {
        "exit": proc.returncode,
        "wall_s": wall,
        "peak_mb": peak_mb,
        "json": payload,
        "stderr": err[-600:],
    }


def _ledger_figures(cwd: Path) -> dict[str, Any]:
    """The latest run of the ledger in ``cwd``: status, calls and cost per tier, all-large counterfactual."""
    from tierwise.config import Config
    from tierwise.core import Tier
    from tierwise.ledger import Ledger
    from tierwise.ledger.spend import spend_summary

    cfg = Config.load(None)
    with Ledger(str(cwd / ".tierwise" / "ledger.db")) as ledger:
        run = ledger.runs(limit=1)[0]
        calls = ledger.calls(run_id=run.id)
    large = cfg.catalog.find(cfg.tiers[Tier.LARGE])
    summary = spend_summary(calls, large)
    return {
        "status": run.status,
        "calls_per_tier": dict(Counter(c.tier for c in calls if c.status not in ("refused", "overrun"))),
        "cost_per_tier": summary["cost_per_tier"],
        "cost_usd": summary["total_cost_usd"],
        "all_large_usd": summary["all_large_counterfactual_usd"],
        "invalid": sum(1 for c in calls if c.status == "invalid_output"),
    }


def run_system(name: str, tmp: Path) -> dict[str, Any]:
    cwd = tmp / name
    cwd.mkdir()
    if name == "pr-review":
        repo = pr_repo(tmp)
        args = ["run", "pr-review", "--repo", str(repo), "--base", "main", "--out", str(cwd / "review.md")]
        timeout = 1800.0
    elif name == "coding-assistant":
        repo = httpx_repo(tmp)
        args = ["run", "coding-assistant", "--repo", str(repo), "Where are timeouts configured?"]
        timeout = 1800.0
    elif name == "research":
        args = [
            "run", "research", "--sources", str(docs_folder(tmp)),
            "How do these libraries let a user set a timeout on a request?",
        ]  # fmt: skip
        timeout = 1800.0
    elif name == "support-triage":
        tickets, examples, kb = triage_inputs(tmp)
        args = [
            "run", "support-triage", "--input", str(tickets), "--examples", str(examples),
            "--kb", str(kb), "--out", str(cwd / "triage.jsonl"),
        ]  # fmt: skip
        timeout = 1800.0
    else:
        from tests.systems.webapp import WebApp

        with WebApp() as app:
            args = ["run", "computer-use", "--url", app.url("/"), "--max-steps", "8",
                    "Order a large pizza for the name Ada and submit the form"]  # fmt: skip
            got = _run([*args, "--json"], cwd, 1800.0)
        return {**got, **_ledger_figures(cwd)}
    got = _run([*args, "--json"], cwd, timeout)
    return {**got, **_ledger_figures(cwd)}


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| system | exit | status | wall s | peak MB | calls L/M/N | cost $ | all-large $ | invalid |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        c = r.get("calls_per_tier") or {}
        cost, large = r.get("cost_usd"), r.get("all_large_usd")
        lines.append(
            f"| {name} | {r['exit']} | {r.get('status')} | {r['wall_s']:.0f} | {r['peak_mb']:.0f} | "
            f"{c.get('large', 0)}/{c.get('mini', 0)}/{c.get('nano', 0)} | "
            f"{'-' if cost is None else f'{cost:.5f}'} | {'-' if large is None else f'{large:.5f}'} | "
            f"{r.get('invalid', 0)} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=SYSTEMS, action="append")
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    for name in args.only or SYSTEMS:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"running {name} ...", flush=True)
            results[name] = run_system(name, Path(tmp))
            r = results[name]
            print(f"  exit {r['exit']}, {r['wall_s']:.0f} s, status {r.get('status')}", flush=True)
            if r["exit"] not in (0,):
                print(f"  stderr: {r['stderr'].strip()[-300:]}", flush=True)
    print(f"\nembedded default, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n")
    print(table(results))
    print("\ncode search recall@5 / MRR on 24 httpx questions: python -m bench.code_search")


if __name__ == "__main__":
    main()
