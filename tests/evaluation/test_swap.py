"""The layer-swap experiment: same inputs, one layer moved, quality and cost compared with a CI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import chaos_config
from tierwise import Session
from tierwise.core import Layer, Tier
from tierwise.evaluation.swap import SwapOutcome, paired_bootstrap_ci, swap_experiment
from tierwise.runtime import Scope
from tierwise.testing import ChaosServer


async def two_layer_system(scope: Scope, case: str) -> SwapOutcome:
    """A toy system: a planning call, then an execution call; its validator checks the plan."""
    plan = await scope.call(f"plan for {case}", kind="plan")
    await scope.call(f"label {case}", kind="classify")
    return SwapOutcome(output=plan.text, quality=1.0 if plan.text == "good plan" else 0.0)


@pytest.fixture()
def toml(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    chaos_server.set_script(
        {
            "rules": [
                {
                    "match": {"model": "large-model", "user_contains": "plan for"},
                    "reply": {"text": "good plan"},
                },
                {"match": {"model": "mini-model", "user_contains": "hard"}, "reply": {"text": "bad plan"}},
                {"match": {"model": "mini-model"}, "reply": {"text": "good plan"}},
                {"match": {"model": "nano-model"}, "reply": {"text": "label"}},
            ]
        }
    )
    path = tmp_path / "tierwise.toml"
    path.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db"))
    return path


async def test_planning_moved_to_mini_costs_less_and_loses_quality_on_hard_inputs(
    toml: Path, chaos_server: ChaosServer
) -> None:
    inputs = ["easy 1", "easy 2", "hard 1", "hard 2"]
    async with Session(toml) as s:
        report = await swap_experiment(
            s.run, two_layer_system, inputs, layer=Layer.PLANNING, to_tier=Tier.MINI
        )
    data = report.to_dict()
    assert data["n"] == 4 and data["quality_source"] == "validator"
    assert data["baseline"]["quality"] == 1.0 and data["swapped"]["quality"] == 0.5
    assert data["quality_diff"] == -0.5
    lo, hi = data["quality_diff_ci95"]
    assert lo <= -0.5 <= hi and hi <= 0
    assert data["swapped"]["cost_usd"] < data["baseline"]["cost_usd"] and data["cost_ratio"] < 1
    planners = [
        r["model"] for r in chaos_server.requests("/v1/chat/completions") if "plan for" in str(r["body"])
    ]
    assert planners.count("large-model") == 4 and planners.count("mini-model") == 4


async def test_judge_scores_both_arms_when_the_system_has_no_validator(
    toml: Path, chaos_server: ChaosServer
) -> None:
    async def no_validator(scope: Scope, case: str) -> SwapOutcome:
        out = await two_layer_system(scope, case)
        return SwapOutcome(out.output)

    async with Session(toml) as s:
        report = await swap_experiment(
            s.run, no_validator, ["hard 1"], layer=Layer.PLANNING, to_tier=Tier.MINI
        )
    data = report.to_dict()
    assert data["quality_source"] == "judge" and data["judge_cost_usd"] > 0
    assert data["n_scored"] == 1  # the chaos server's default JSON is a valid JudgeScore


def test_bootstrap_ci_brackets_the_mean() -> None:
    diffs = np.array([0.1, 0.2, -0.1, 0.3, 0.0, 0.2])
    lo, hi = paired_bootstrap_ci(diffs)
    assert lo < diffs.mean() < hi


async def test_empty_inputs_are_refused(toml: Path) -> None:
    from tierwise.errors import InputError

    async with Session(toml) as s:
        with pytest.raises(InputError, match="at least one input"):
            await swap_experiment(s.run, two_layer_system, [], layer=Layer.PLANNING, to_tier=Tier.MINI)
