"""The loop a user runs, over three tiers, on the chaos server: shadow checks judged and recorded in the
ledger → `eval train --from-ledger` → `[routing] router = "learned"` → `eval replay --from-ledger`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import chaos_config
from tierwise import Session
from tierwise.routing.learned import LearnedModel
from tierwise.testing import ChaosServer

SHADOW = "[shadow]\nshare = 1.0\nbudget_usd = 1.0\nseed = 3\njudge = true\n"
PLACES = ("station", "mall", "airport", "bar", "park", "gym", "office", "market", "beach", "club")
PASSWORD = [f"how do I reset my password on the {p} terminal" for p in PLACES]
REFUND = [f"I want a refund for the order I placed at the {p}" for p in PLACES]
STOLEN = [f"my card was stolen at the {p} last night" for p in PLACES]

# Nano answers "low" to everything; mini gets refunds right; large is right everywhere. The judge scores
# an answer 0.9 when it matches the large one, 0.2 when not (the wrong answer is always "low" here).
SCRIPT = {
    "rules": [
        {
            "match": {"user_regex": r"<answer_a>\n(\w+)\n</answer_a>\n\n<answer_b>\n\1\n"},
            "reply": {"text": '{"score_a": 9, "score_b": 9}'},
        },
        {"match": {"user_contains": "<answer_a>\nlow\n"}, "reply": {"text": '{"score_a": 2, "score_b": 9}'}},
        {"match": {"user_contains": "<answer_a>"}, "reply": {"text": '{"score_a": 9, "score_b": 2}'}},
        {"match": {"model": "nano-model"}, "reply": {"text": "low"}},
        {"match": {"model": "mini-model", "user_contains": "refund"}, "reply": {"text": "refund"}},
        {"match": {"model": "mini-model"}, "reply": {"text": "low"}},
        {"match": {"model": "large-model", "user_contains": "refund"}, "reply": {"text": "refund"}},
        {"match": {"model": "large-model", "user_contains": "stolen"}, "reply": {"text": "critical"}},
        {"match": {"model": "large-model"}, "reply": {"text": "low"}},
    ]
}


def _cli(toml: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierwise", "--config", str(toml), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_three_tier_ledger_loop_routes_to_every_tier(tmp_path: Path, chaos_server: ChaosServer) -> None:
    toml = tmp_path / "tierwise.toml"
    config = chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db", SHADOW)
    toml.write_text(config.replace("[ledger]\n", "[ledger]\nstore_prompts = true\n", 1))
    chaos_server.set_script(SCRIPT)
    # The policy sends classify to nano and tool_op to mini: nano rows score nano and large, mini rows
    # mini and large; no row scores all three.
    async with Session(toml) as s, s.run("traffic") as run:
        for text in PASSWORD + REFUND + STOLEN:
            await s.call(text, kind="classify", run=run)
        for text in REFUND + STOLEN:
            await s.call(text, kind="tool_op", run=run)

    out = _cli(
        toml, "eval", "train", "--from-ledger", "--embedder", "static", "--out", str(tmp_path / "r.npz")
    )
    assert out.returncode == 0, out.stderr
    out = _cli(
        toml,
        "eval",
        "train",
        "--from-ledger",
        "--embedder",
        "static",
        "--out",
        str(tmp_path / "r.npz"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["models"] == ["chaos/nano", "chaos/mini", "chaos/large"]
    assert summary["ledger"] == {"rows": 50, "score_source": "judge", "skipped": {}}
    assert summary["threshold"] is not None and 0 < summary["threshold"] < 1

    # Each tier's predictor learned from the rows that scored it: nano is poor on refunds, mini is not.
    model = LearnedModel.load(tmp_path / "r.npz")
    q = model.predict(model.features(["I want a refund for the order I placed at the kiosk"]))[0]
    assert q[0] < 0.5 < q[1], q

    deployed = tmp_path / "deployed.toml"
    deployed.write_text(
        toml.read_text().replace("share = 1.0", "share = 0.0")
        + f'\n[routing]\nrouter = "learned"\nlearned_model = "{tmp_path / "r.npz"}"\n'
    )
    # The catalog's built-in models were not trained on: tasks that need them go to the policy (a warning).
    with pytest.warns(UserWarning, match="not trained on"):
        async with Session(deployed) as s:
            got = {
                text: await s.route(text, kind="classify")
                for text in (
                    "how do I reset my password on the kiosk terminal",
                    "I want a refund for the order I placed at the kiosk",
                    "my card was stolen at the kiosk last night",
                )
            }
    models = [d.model for d in got.values()]
    assert models == ["chaos/nano", "chaos/mini", "chaos/large"], [d.reason for d in got.values()]

    # [routing] learned_min_confidence: below it the policy decides (classify goes to nano by policy).
    wary = tmp_path / "wary.toml"
    wary.write_text(deployed.read_text() + "learned_min_confidence = 1.0\n")
    with pytest.warns(UserWarning, match="not trained on"):
        async with Session(wary) as s:
            theft = await s.route("my card was stolen at the kiosk last night", kind="classify")
    assert theft.model == "chaos/nano" and "is below 1.00" in theft.reason, theft.reason

    # The replay report: the learned router against the policy on the same ledger rows.
    report = tmp_path / "report"
    for extra in ((), ("--router-file", str(tmp_path / "r.npz"))):
        out = _cli(
            toml,
            "eval",
            "replay",
            "--from-ledger",
            "--embedder",
            "static",
            *extra,
            "--report",
            str(report),
            "--json",
        )
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        ledger = result["ledger"]
        policy, learned = ledger["policy"], ledger["learned"]
        assert ledger["rule"] == "threshold"
        # Policy: nano 30 rows and mini 20, right on 10 + 10 of them (0.9), wrong on 30 (0.2).
        assert policy["quality"] == np.float64(0.48).round(6)
        assert policy["share"] == {"chaos/nano": 0.6, "chaos/mini": 0.4, "chaos/large": 0.0}
        assert learned["quality"] > policy["quality"] + 0.2
        assert learned["cost"] < ledger["large"]["cost"]
        assert all(share > 0 for share in learned["share"].values()), learned
        assert 0 < learned["estimated_share"] < 1  # nano-routed refunds sent to mini were never run there
        assert result["reliability"]["n"] == 100  # every scored cell: 50 routed + 50 large
    page = (report / "index.html").read_text()
    assert "reliability.png" in page and "policy on the ledger rows" in page
    assert (report / "frontier.png").stat().st_size > 0 and (report / "reliability.png").stat().st_size > 0
