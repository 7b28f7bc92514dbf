"""The Scope: what orchestration and systems hold of a run (the one path, step records, spend, resume)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tierwise import Session
from tierwise.core import Tier
from tierwise.errors import BudgetExceeded
from tierwise.runtime import FanOut
from tierwise.testing import ChaosServer

from ..conftest import PeakCalls


async def test_step_records_take_tier_and_cost_from_their_calls(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"rules": [{"reply": "ok"}]})
    async with Session(chaos_toml) as s, s.run("test", "steps") as scope:
        a = await scope.call("label it", kind="classify")
        b = await scope.call("plan it", kind="plan")
        rec = await scope.record_step_durable("both", "ok", output="done", results=[a, b])
        spend = await scope.spend()
        assert scope.steps is not None
    assert rec.tier == "large" and rec.metadata["tiers"] == ["large", "nano"] and rec.metadata["calls"] == 2
    assert rec.cost_usd == pytest.approx(a.cost_usd + b.cost_usd)
    assert spend["cost_per_tier"].keys() == {"nano", "large"} and spend["calls"] == 2
    assert spend["total_cost_usd"] == pytest.approx(a.cost_usd + b.cost_usd)


async def test_fan_out_caps_calls_per_routed_tier(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"latency_s": 0.05, "rules": [{"reply": "ok"}]})
    async with Session(chaos_toml) as s:
        assert s.runtime is not None
        calls = PeakCalls(s.runtime)
        async with s.run("test", "fan", fan_out=FanOut(per_tier={Tier.NANO: 2}, in_flight=10)) as scope:
            await asyncio.gather(*(scope.call(f"label {i}", kind="classify") for i in range(8)))
    assert calls.peak == 2


async def test_resume_keeps_the_runs_cap_and_counts_what_it_spent(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(
        {"rules": [{"reply": {"text": "ok", "usage": {"prompt_tokens": 100, "completion_tokens": 5}}}]}
    )
    async with Session(chaos_toml) as s:
        # One call costs $0.00002625 (100 in, 5 out) and reserves ~$0.00002 (10 output tokens) first; a
        # $0.00004 cap takes one call, not two, across the run's attempts.
        async with s.run("test", "capped", budget_usd=0.00004) as scope:
            first = await scope.call("label it", kind="classify", max_output_tokens=10)
            run_id = scope.id
        with pytest.raises(BudgetExceeded):
            async with s.run("test", run_id=run_id, resume=True) as again:
                # No new budget given: the stored cap holds, and what the run spent already counts.
                assert again.budget.caps.usd == 0.00004
                assert again.budget.spent_usd == pytest.approx(first.cost_usd)
                await again.call("label it", kind="classify", max_output_tokens=10)
        async with s.run("test", run_id=run_id, resume=True, budget_usd=0.001) as more:
            await more.call("label it", kind="classify", max_output_tokens=10)  # a larger cap continues
