"""Plan validation, tier overrides and the over-decomposition merge."""

from __future__ import annotations

from tierwise.config import Config
from tierwise.core import Tier
from tierwise.orchestration import Plan, PlanLimits, step_task, validate_plan
from tierwise.orchestration.plan import topological_order
from tierwise.orchestration.spend import merge_siblings
from tierwise.routing.factory import build_policy


def plan(*steps: dict) -> Plan:
    return Plan.model_validate({"steps": [{"kind": "extract", "instruction": "x", **s} for s in steps]})


def test_valid_plan_has_no_errors_and_orders_topologically() -> None:
    p = plan({"id": "b", "depends_on": ["a"]}, {"id": "a"})
    assert validate_plan(p) == []
    assert [s.id for s in topological_order(p)] == ["a", "b"]


def test_errors_name_the_step_and_the_fix() -> None:
    assert validate_plan(plan({"id": "a", "depends_on": ["zz"]})) == [
        "step 'a' depends on 'zz', which is not a step of the plan"
    ]
    assert "used twice" in validate_plan(plan({"id": "a"}, {"id": "a"}))[0]
    assert "reserved" in validate_plan(plan({"id": "__plan__"}))[0]
    assert validate_plan(Plan(steps=[])) == ["the plan has no steps: add at least one step"]
    cyc = validate_plan(
        plan(
            {"id": "a", "depends_on": ["c"]},
            {"id": "b", "depends_on": ["a"]},
            {"id": "c", "depends_on": ["b"]},
        )
    )
    assert cyc and "cycle" in cyc[0] and "a -> c -> b -> a" in cyc[0]


def test_caps_on_steps_items_fanout_and_depth() -> None:
    limits = PlanLimits(max_steps=3, max_items=2, max_fanout=1, max_depth=2)
    wide = plan(
        {"id": "a"},
        {"id": "b", "depends_on": ["a"]},
        {"id": "c", "depends_on": ["a"]},
        {"id": "d", "items": ["1", "2", "3"]},
    )
    errors = " | ".join(validate_plan(wide, limits))
    assert (
        "4 steps; the cap is 3" in errors
        and "3 items; the cap is 2" in errors
        and "fan-out cap is 1" in errors
    )
    deep = plan({"id": "a"}, {"id": "b", "depends_on": ["a"]}, {"id": "c", "depends_on": ["b"]})
    assert validate_plan(deep, limits) == ["the longest dependency chain has 3 steps; the cap is 2"]


def test_tier_hints_are_bounded_by_the_policy_with_reasons() -> None:
    """A plan's tier hints reach the router, which bounds them by the kind and says why."""
    p = Plan.model_validate(
        {
            "steps": [
                {"id": "j", "kind": "debug", "tier": "nano", "instruction": "x"},
                {"id": "m", "kind": "classify", "tier": "large", "instruction": "x"},
                {"id": "k", "kind": "extract", "tier": "nano", "instruction": "x"},
                {"id": "amb", "kind": "extract", "tier": "nano", "instruction": "x", "ambiguity": 0.9},
            ]
        }
    )
    router = build_policy(Config.from_dict({}))
    d = {s.id: router.decide(step_task(s, "goal")) for s in p.steps}
    assert (d["j"].tier, d["m"].tier, d["k"].tier, d["amb"].tier) == (
        Tier.MINI,
        Tier.NANO,
        Tier.NANO,
        Tier.LARGE,
    )
    assert "needs judgment" in d["j"].reason and "mechanical" in d["m"].reason
    assert "ambiguity 0.90" in d["amb"].reason and "tier hint nano" in d["k"].reason


def test_merge_siblings_rewires_dependents() -> None:
    p = plan({"id": "a"}, {"id": "b"}, {"id": "c", "depends_on": ["a", "b"]})
    merged, notes = merge_siblings(p, {"a": Tier.NANO, "b": Tier.NANO, "c": Tier.NANO})
    assert [s.id for s in merged.steps] == ["a", "c"]
    assert merged.by_id()["c"].depends_on == ["a"] and validate_plan(merged) == []
    assert notes == ["merged a, b into a"]
