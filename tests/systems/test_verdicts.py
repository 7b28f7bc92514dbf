"""Honest verdicts: computer-use success is checked in code against the final page, and a review that
could not cover its input within the budget says which files it left, ends ``partial`` and exits 3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import chaos_config, tw
from tests.systems.test_pr_review import assert_valid_sarif, make_repo
from tests.systems.test_pr_review import tw as pr_tw
from tests.systems.webapp import WebApp
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer
from tierwise.tools.browser import chromium_path

GOAL = "Order a large pizza for Ada"
CLAIM = {"success": True, "reason": "the order was placed", "evidence": "Thank you, Ada!"}


@pytest.fixture()
def app() -> Iterator[WebApp]:
    with WebApp() as web:
        yield web


def _cu_script(app: WebApp, judge: dict[str, Any]) -> dict[str, Any]:
    """mini clicks links that do not exist, then navigates to invented URLs; the judge claims success."""
    return {
        "rules": [
            {
                "match": {"model": "large-model", "system_contains": "You plan browser interactions"},
                "reply": {"json": {"steps": ["open the checkout", "confirm the order"]}},
            },
            {"match": {"model": "large-model", "system_contains": "You judge"}, "reply": {"json": judge}},
            {
                "match": {"model": "mini-model", "user_contains": "Step 1 of"},
                "reply": {"json": {"action": "click", "target": 'link "Checkout now"'}},
            },
            {
                "match": {"model": "mini-model"},
                "reply": {"json": {"action": "click", "target": f'link "{app.url("/checkout/confirm")}"'}},
            },
            {"match": {"model": "nano-model"}, "reply": {"json": {"outcome": "no_effect"}}},
        ]
    }


needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed")


@needs_chromium
def test_unreachable_goal_is_not_success_whatever_the_judge_says(
    app: WebApp, chaos_server: ChaosServer, tmp_path: Path
) -> None:
    pytest.importorskip("playwright")
    (tmp_path / "tierwise.toml").write_text(chaos_config(chaos_server.base_url, "sqlite:///ledger.db"))
    chaos_server.set_script(_cu_script(app, CLAIM))
    out = tw(
        "run", "computer-use", GOAL, "--url", app.url("/"), "--max-steps", "8", "--json", "--out", "cu.md",
        cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    d = json.loads(out.stdout)
    assert len(d["steps"]) == 8 and {s["observed"] for s in d["steps"]} == {"error"}
    assert d["final_url"] == app.url("/") and d["stopped"] == "max_steps"
    assert d["success"] is False and d["judge"] == "the order was placed"  # the claim, kept as a claim
    assert "'Thank you, Ada!' is not on the final page" in d["verdict"]
    assert d["evidence"]["source"] == "judge" and d["evidence"]["missing"] == ["Thank you, Ada!"]
    assert "success: False" in (tmp_path / "cu.md").read_text()


@needs_chromium
async def test_evidence_comes_from_expect_goal_quotes_or_the_judge(
    app: WebApp, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    """Text already on the start page proves nothing; the user's --expect decides when given."""
    pytest.importorskip("playwright")
    from tests.systems.test_computer_use import drive

    on_start = {**CLAIM, "evidence": "Order a pizza"}  # the start page's own heading
    chaos_server.set_script(_cu_script(app, on_start))
    r = await drive(chaos_toml, app.url("/"), max_steps=1)
    assert not r.success and "already on the start page" in r.verdict
    r = await drive(chaos_toml, app.url("/"), max_steps=1, expect=("About us",))
    assert r.success and r.evidence["source"] == "expect" and r.evidence["found"] == ["About us"]
    chaos_server.set_script(_cu_script(app, {"success": True, "reason": "done", "evidence": ""}))
    r = await drive(chaos_toml, app.url("/"), f'{GOAL} until "Thank you" shows', max_steps=1)
    assert not r.success and r.evidence == {
        "success": False, "source": "goal", "why": "not on the final page: ['Thank you'] (from the goal)",
        "found": [], "missing": ["Thank you"],
    }  # fmt: skip


def test_review_over_budget_names_unreviewed_files_and_exits_3(
    chaos_server: ChaosServer, chaos_toml: Path, tmp_path: Path
) -> None:
    before = {f"app/m{i}.py": f"def f{i}(x):\n    return x\n" for i in range(6)}
    after = {f"app/m{i}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(6)}
    repo = make_repo(tmp_path / "repo", before, after)
    chaos_server.set_script(
        {"rules": [{"match": {"model": "mini-model"}, "reply": {"json": {"findings": []}}}]}
    )
    # A review_file call reserves its worst case (~1,600 output+input tokens' worth on mini); this cap
    # covers two of them, so four of the six files are refused before anything is sent.
    out = tmp_path / "review.md"
    proc = pr_tw(
        "--repo", str(repo), "--base", "main", "--out", str(out), "--json", "--budget", "0.0042",
        toml=chaos_toml, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    reviewed = [f["path"] for f in data["files"] if f["reviewed"]]
    missed = [f["path"] for f in data["files"] if not f["reviewed"]]
    assert len(reviewed) == 2 and len(missed) == 4, data["files"]
    assert {f["note"] for f in data["files"] if not f["reviewed"]} == {"not reviewed: over budget"}
    (why,) = [w for w in data["warnings"] if "not reviewed:" in w and "changed file" in w]
    assert why.startswith("4 of 6 changed file(s) not reviewed") and all(p in why for p in missed)
    md, js = out.read_text(), json.loads(out.with_suffix(".json").read_text())
    sarif = json.loads(out.with_suffix(".sarif").read_text())
    assert why in md and why in js["warnings"]
    assert_valid_sarif(sarif)
    (run,) = sarif["runs"]
    assert run["properties"]["notReviewed"] == missed
    assert why in [n["message"]["text"] for n in run["invocations"][0]["toolExecutionNotifications"]]
    with Ledger(Config.load(chaos_toml).ledger.url) as ledger:
        record = ledger.get_run(data["run_id"])
    assert record.status == "partial" and "4 of 6 changed file(s) not reviewed" in (record.error or "")
