"""Orchestration end to end against the chaos server: scripted plans, tool calls and final QA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tierwise import BudgetExceeded, InputError, Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.orchestration import StepFailed
from tierwise.testing import ChaosServer

PLAN = {
    "steps": [
        {
            "id": "find",
            "kind": "code_search",
            "tier": "mini",
            "instruction": "find the TODOs",
            "files": [],
            "depends_on": [],
        },
        {
            "id": "label",
            "kind": "classify",
            "tier": "large",
            "instruction": "label each TODO",
            "depends_on": ["find"],
            "items": ["todo one", "todo two", "todo three"],
        },
        {
            "id": "judge",
            "kind": "debug",
            "tier": "nano",
            "instruction": "judge the riskiest TODO",
            "depends_on": ["label"],
        },
    ]
}
VERDICT = {"answer": "three TODOs, one risky", "complete": True, "rerun": [], "feedback": ""}


def plan_script(plan: dict = PLAN, verdict: dict = VERDICT, extra: list | None = None) -> dict:
    return {
        "rules": [
            *(extra or []),
            {
                "match": {"model": "large-model", "system_contains": "You are the planner"},
                "reply": {"json": plan},
            },
            {
                "match": {"model": "large-model", "system_contains": "final answer"},
                "reply": {"json": verdict},
            },
            {"match": {"model": "nano-model"}, "reply": {"json": {"results": ["a", "b", "c"]}}},
        ]
    }


def _ledger(toml: Path) -> Ledger:
    return Ledger(Config.load(toml).ledger.url)


def _chat(server: ChaosServer) -> list[dict]:
    return server.requests("/v1/chat/completions")


async def test_plan_executes_on_tiers_and_synthesizes(
    chaos_toml: Path, chaos_server: ChaosServer, tmp_path: Path
) -> None:
    chaos_server.set_script(plan_script())
    async with Session(chaos_toml) as s:
        result = await s.orchestrate("Summarize the TODOs")
    d = result.to_dict()
    assert d["answer"] == "three TODOs, one risky"
    assert not d["fallback_plan"]
    tiers = {st["id"]: (st["tier"], st["status"]) for st in d["steps"]}
    # large hint on a mechanical step is lowered; nano hint on a judgment step is raised.
    assert tiers == {"find": ("mini", "ok"), "label": ("nano", "ok"), "judge": ("mini", "ok")}
    assert any("lowered to nano" in n for n in d["notes"]) and any("raised to mini" in n for n in d["notes"])
    assert set(d["cost_per_tier"]) == {"large", "mini", "nano"}
    assert d["total_cost_usd"] == pytest.approx(sum(d["cost_per_tier"].values()))
    assert d["all_large_counterfactual_usd"] > d["total_cost_usd"]
    assert set(d["cost_per_step"]) >= {"__plan__", "find", "label", "judge", "__final__"}
    with _ledger(chaos_toml) as ledger:
        steps = ledger.finished_steps(result.run_id)
        run = ledger.get_run(result.run_id)
    assert set(steps) == {"__plan__", "find", "label", "judge", "__final__"}
    assert json.loads(steps["label"].output) == ["a", "b", "c"]
    assert run.status == "ok" and run.kind == "orchestrate"
    # the 3 items of the nano map step went out in one batched call
    nano = [r for r in _chat(chaos_server) if r["model"] == "nano-model"]
    assert len(nano) == 1 and "todo three" in nano[0]["body"]["messages"][-1]["content"]


async def test_invalid_plan_is_repaired_quoting_the_errors(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    bad = {"steps": [{"id": "a", "kind": "classify", "instruction": "x", "depends_on": ["ghost"]}]}
    good = {"steps": [{"id": "a", "kind": "classify", "instruction": "x", "depends_on": []}]}
    chaos_server.set_script(
        plan_script(
            extra=[
                {
                    "match": {"model": "large-model", "user_contains": "That plan is invalid"},
                    "reply": {"json": good},
                },
                {
                    "times": 1,
                    "match": {"model": "large-model", "system_contains": "You are the planner"},
                    "reply": {"json": bad},
                },
            ]
        )
    )
    async with Session(chaos_toml) as s:
        result = await s.orchestrate("Classify the ticket")
    assert not result.fallback_plan and [st["id"] for st in result.steps] == ["a"]
    repair = [r for r in _chat(chaos_server) if "That plan is invalid" in json.dumps(r["body"])]
    assert (
        repair and "'ghost', which is not a step of the plan" in repair[0]["body"]["messages"][-1]["content"]
    )


async def test_plan_that_stays_invalid_falls_back(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    cyclic = {
        "steps": [
            {"id": "a", "kind": "extract", "instruction": "x", "depends_on": ["b"]},
            {"id": "b", "kind": "extract", "instruction": "y", "depends_on": ["a"]},
        ]
    }
    chaos_server.set_script(plan_script(plan=cyclic))
    async with Session(chaos_toml) as s:
        result = await s.orchestrate("Do the thing")
    assert result.fallback_plan and [st["id"] for st in result.steps] == ["draft"]
    assert any("cycle" in n for n in result.notes)
    with _ledger(chaos_toml) as ledger:
        plan_rec = ledger.finished_steps(result.run_id)["__plan__"]
    assert plan_rec.metadata["fallback"] is True


async def test_bad_input_is_refused_clearly(
    chaos_toml: Path, chaos_server: ChaosServer, tmp_path: Path
) -> None:
    async with Session(chaos_toml) as s:
        with pytest.raises(InputError, match="goal is empty"):
            await s.orchestrate("   ")
        with pytest.raises(InputError, match="does not exist"):
            await s.orchestrate("look", workspace=tmp_path / "nope")
        with pytest.raises(InputError, match="tokens but the large model"):
            await s.orchestrate("word " * 120_000)
    assert _chat(chaos_server) == []


async def test_failing_step_names_the_step_and_keeps_finished_ones(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    plan = {
        "steps": [
            {"id": "ok1", "kind": "extract", "instruction": "fine", "depends_on": []},
            {"id": "boom", "kind": "extract", "instruction": "explode", "depends_on": ["ok1"]},
        ]
    }
    chaos_server.set_script(
        plan_script(
            plan=plan,
            extra=[
                {"match": {"user_contains": "explode"}, "fault": "http_500"},
            ],
        )
    )
    async with Session(chaos_toml) as s:
        with pytest.raises(StepFailed, match="step 'boom'") as info:
            await s.orchestrate("Two steps")
    assert "tierwise resume" in str(info.value)
    with _ledger(chaos_toml) as ledger:
        run = ledger.runs(1)[0]
        steps = {st.step_id: st.status for st in ledger.steps(run.id)}
    assert run.status == "failed" and "boom" in (run.error or "")
    assert steps == {"__plan__": "ok", "ok1": "ok", "boom": "failed"}


async def test_budget_exhaustion_stops_the_run(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    script = plan_script()
    # the planner's answer costs $0.016, leaving too little for the large synthesis call's worst case
    script["rules"][0]["reply"]["usage"] = {"prompt_tokens": 1000, "completion_tokens": 900}
    chaos_server.set_script(script)
    async with Session(chaos_toml) as s:
        with pytest.raises(BudgetExceeded, match="budget") as info:
            await s.orchestrate("Summarize the TODOs", budget=0.02)
    # the plan and the steps fit; the large synthesis call's worst case does not: refused before sending
    assert "__final__" in str(info.value)
    with _ledger(chaos_toml) as ledger:
        run = ledger.runs(1)[0]
        steps = ledger.finished_steps(run.id)
        calls = ledger.calls(run.id)
    assert run.status == "failed" and {"__plan__", "find", "label", "judge"} <= set(steps)
    assert calls[-1].status == "refused" and sum(c.cost_usd or 0 for c in calls) <= 0.02


async def test_synthesis_that_stays_invalid_falls_back_to_the_step_results(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    script = plan_script()
    script["rules"][1] = {
        "match": {"model": "large-model", "system_contains": "final answer"},
        "reply": {"text": '{"answer": "cut off'},
    }
    chaos_server.set_script(script)
    async with Session(chaos_toml) as s:
        result = await s.orchestrate("Summarize the TODOs")
    d = result.to_dict()
    assert d["answer"].startswith("No synthesis could be written") and "label" in d["answer"]
    assert any("synthesis failed" in w for w in d["warnings"])
    with _ledger(chaos_toml) as ledger:
        steps = {s.step_id: s.status for s in ledger.steps(result.run_id)}
    assert steps["__final__"] == "failed" and steps["label"] == "ok"
