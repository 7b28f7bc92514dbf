"""Online shadow checks: sampled routed calls re-run on the large tier, on their own budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import chaos_config
from tierwise import Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.runtime.shadow import agreement
from tierwise.testing import ChaosServer

SHADOW = "[shadow]\nshare = 1.0\nbudget_usd = 0.5\nseed = 1\nalarm_disagreement = 0.25\n"


def test_agreement_scores() -> None:
    assert agreement('{"a": "High "}', '{"a": "high"}') == 1.0
    assert agreement('{"a": 1}', '{"a": 2}') == 0.0
    assert agreement("the card was stolen", "card stolen") == 0.5


async def test_shadow_disagreement_is_recorded_and_raises_an_alarm(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db", SHADOW))
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"model": "nano-model"}, "reply": {"text": "low"}},
                {"match": {"model": "large-model", "user_contains": "stolen"}, "reply": {"text": "critical"}},
                {"match": {"model": "large-model"}, "reply": {"text": "low"}},
            ]
        }
    )
    async with Session(toml) as s, s.run("test") as run:
        for text in ("card stolen", "card stolen again", "password reset"):
            result = await s.call(text, kind="classify", run=run)
            assert result.text == "low"  # the caller gets the routed answer, never the shadow's
        assert run.budget.spent_usd > 0
    with Ledger(Config.load(toml).ledger.url) as ledger:
        shadows = [c for c in ledger.calls() if c.operation == "shadow"]
    assert len(shadows) == 3 and {c.model for c in shadows} == {"chaos/large"}
    assert sorted(c.metadata["agree"] for c in shadows) == [False, False, True]

    out = subprocess.run(
        [sys.executable, "-m", "tierwise", "--config", str(toml), "eval", "shadow-report", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    group = next(g for g in report["groups"] if g["kind"] == "classify" and g["tier"] == "nano")
    assert group["shadowed"] == 3 and group["agreement_rate"] == round(1 / 3, 4)
    assert group["alarm"] and report["alarms"] == ["classify@nano"]
    assert report["shadow_cost_usd"] > 0


async def test_shadow_budget_is_separate_and_capped(tmp_path: Path, chaos_server: ChaosServer) -> None:
    toml = tmp_path / "tierwise.toml"
    tiny = SHADOW.replace("budget_usd = 0.5", "budget_usd = 0.000001")
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db", tiny))
    async with Session(toml, budget_usd=0.01) as s:
        result = await s.call("card stolen", kind="classify")
    assert result.model == "chaos/nano"
    with Ledger(Config.load(toml).ledger.url) as ledger:
        ops = [(c.operation, c.status) for c in ledger.calls()]
    # The shadow's worst case does not fit its own budget: refused, the routed call unaffected.
    assert ("chat", "ok") in ops and ("shadow", "ok") not in ops
