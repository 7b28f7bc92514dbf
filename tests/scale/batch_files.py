"""What the batch tests share: input files, output rows, what the chaos server was asked, a CLI batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tierwise.testing import ChaosServer


def items(path: Path, n: int, *, bad: bool = False) -> Path:
    """``n`` JSONL items ``{"id": "t<i>", "text": "ticket <i>"}`` (with ``bad``: two bad rows among them)."""
    lines = [json.dumps({"id": f"t{i}", "text": f"ticket {i}"}) for i in range(n)]
    if bad:
        lines.insert(3, "{not json")
        lines.insert(5, json.dumps({"id": "x", "body": "no text field"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def asked(server: ChaosServer) -> Counter[str]:
    """Chat requests per item text (the last user message) the server received."""
    seen: Counter[str] = Counter()
    for r in server.requests("/v1/chat/completions"):
        msgs = r.get("body", {}).get("messages") or []
        users = [m.get("content") for m in msgs if m.get("role") == "user"]
        if users:
            seen[str(users[-1])] += 1
    return seen


def start_batch(
    cwd: Path, toml: Path, inp: Path, out: Path, *extra: str
) -> tuple[list[str], subprocess.Popen]:
    """``tierwise batch INP --task ask --tier nano --out OUT EXTRA...`` as a user starts it (no key, no
    config from the environment): the command, to run again, and the process."""
    cmd = [sys.executable, "-m", "tierwise", "--config", str(toml), "batch", str(inp), "--task", "ask"]
    cmd += ["--tier", "nano", "--out", str(out), *extra]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return cmd, proc


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIERWISE_CONFIG")}


def wait_rows(out: Path, n: int, timeout: float = 60) -> None:
    """Until ``out`` holds ``n`` rows (or the time is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < n):
        time.sleep(0.05)
