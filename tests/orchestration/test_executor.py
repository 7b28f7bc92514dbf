"""The executor: per-tier caps hold under load; the over-decomposition guard merges tiny steps."""

from __future__ import annotations

from pathlib import Path

from tierwise import Session
from tierwise.core import Tier
from tierwise.orchestration import ExecLimits, Executor, Plan
from tierwise.runtime import FanOut
from tierwise.testing import ChaosServer

from ..conftest import PeakCalls
from .test_orchestrate import plan_script


async def test_per_tier_concurrency_cap_holds(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"latency_s": 0.05, "rules": []})
    p = Plan.model_validate(
        {"steps": [{"id": f"s{i}", "kind": "extract", "instruction": f"item {i}"} for i in range(12)]}
    )
    async with Session(chaos_toml) as s:
        assert s.runtime is not None
        limits = ExecLimits(per_tier={Tier.NANO: 3}, in_flight=10)
        fan_out = FanOut(per_tier=limits.per_tier, in_flight=limits.in_flight)
        async with s.run("test", "cap", fan_out=fan_out) as scope:
            ex = Executor(scope, p, limits=limits)
            calls = PeakCalls(s.runtime)
            outcomes = await ex.execute()
    # The cap applies to the tier each call was routed to (extract → nano by the default policy).
    assert calls.peak == 3 and len(outcomes) == 12 and all(o.status == "ok" for o in outcomes.values())
    assert {o.tier for o in outcomes.values()} == {"nano"}


async def test_over_decomposed_plan_is_merged_and_reported(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    tiny = {
        "steps": [
            {"id": f"t{i}", "kind": "extract", "tier": "nano", "instruction": f"word {i}"} for i in range(6)
        ]
    }
    script = plan_script(plan=tiny)
    # planning took 2,500 tokens: more than the six one-word steps would do
    script["rules"][0]["reply"]["usage"] = {"prompt_tokens": 2000, "completion_tokens": 500}
    chaos_server.set_script(script)
    async with Session(chaos_toml) as s:
        result = await s.orchestrate("Extract six words")
    assert [st["id"] for st in result.steps] == ["t0"]
    assert any("over-decomposition" in w and "merged t0, t1" in w for w in result.warnings)
    assert result.to_dict()["overhead"]["ratio"] > 0
