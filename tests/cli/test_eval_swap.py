"""`tierwise eval swap` over a ready system (support triage) on the scripted loopback server."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import chaos_config
from tierwise.testing import ChaosServer


def test_swap_execution_layer_of_support_triage(tmp_path: Path, chaos_server: ChaosServer) -> None:
    examples = tmp_path / "examples.csv"
    rows = [(f"my card {w} was stolen yesterday", "card_stolen") for w in ("visa", "debit", "credit", "gold")]
    rows += [(f"how do I reset my {w} password", "password_reset") for w in ("online", "app", "bank", "web")]
    with examples.open("w", newline="") as fh:
        csv.writer(fh).writerows([("text", "category"), *rows])
    tickets = tmp_path / "tickets.csv"
    with tickets.open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [
                ("text", "category"),
                ("my visa card was stolen", "card_stolen"),
                ("reset my app password please", "password_reset"),
            ]
        )
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text(json.dumps({"tickets": str(tickets), "examples": str(examples)}) + "\n")
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db"))
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["TIERWISE_CACHE_DIR"] = str(tmp_path / "cache")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tierwise",
            "--config",
            str(toml),
            "eval",
            "swap",
            "--system",
            "support-triage",
            "--layer",
            "execution",
            "--to",
            "large",
            "--inputs",
            str(inputs),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["layer"] == "execution" and data["to_tier"] == "large" and data["n"] == 1
    assert data["quality_source"] == "validator" and data["baseline"]["quality"] is not None
    assert data["swapped"]["cost_usd"] > data["baseline"]["cost_usd"]  # mini drafts moved up to large
    assert len(data["quality_diff_ci95"]) == 2


def test_swap_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "in.jsonl"
    bad.write_text("[1, 2]\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tierwise",
            "eval",
            "swap",
            "--system",
            "support-triage",
            "--layer",
            "execution",
            "--to",
            "nano",
            "--inputs",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "JSON object" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tierwise",
            "eval",
            "swap",
            "--system",
            "nope",
            "--layer",
            "execution",
            "--to",
            "nano",
            "--inputs",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "unknown system 'nope'" in out.stderr
