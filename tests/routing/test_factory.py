"""Routers are selectable by name in tierwise.toml."""

from __future__ import annotations

import pytest

from tierwise.config import Config
from tierwise.core import TaskKind, Tier
from tierwise.errors import ConfigError
from tierwise.routing import Task
from tierwise.routing.factory import build_router

TIERS = {"large": "openai/gpt-5.4", "mini": "openai/gpt-5.4-mini", "nano": "openai/gpt-5.4-nano"}


def test_cascade_starts_on_the_cheapest_tier() -> None:
    cfg = Config.from_dict({"tiers": TIERS, "routing": {"router": "cascade"}})
    router = build_router(cfg, None)
    assert router.name == "cascade"
    d = router.decide(Task("pull the order number", kind=TaskKind.EXTRACT))
    assert d.tier is Tier.NANO and "cheapest" in d.reason and d.escalation is not None
    # Planning, ambiguous input and high stakes start where the policy puts them, not on nano.
    plan = router.decide(Task("plan the migration", kind=TaskKind.PLAN))
    assert plan.tier is Tier.LARGE and "starts on large" in plan.reason and plan.escalation is None
    risky = router.decide(Task("pull the order number", kind=TaskKind.EXTRACT, ambiguity=0.9))
    assert risky.tier is Tier.LARGE


def test_unknown_router_and_missing_learned_model_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="not one of policy, learned, nano, cascade"):
        build_router(Config.from_dict({"routing": {"router": "magic"}}), None)
    with pytest.raises(ConfigError, match="learned_model"):
        build_router(Config.from_dict({"routing": {"router": "learned"}}), None)


def test_nano_router_by_name() -> None:
    router = build_router(Config.from_dict({"tiers": TIERS, "routing": {"router": "nano"}}), None)
    assert router.name == "nano"


def test_every_router_is_importable_from_the_package() -> None:
    import tierwise.routing as routing
    from tierwise.routing.cascade import CascadeRouter
    from tierwise.routing.learned import LearnedRouter
    from tierwise.routing.nano import NanoRouter

    assert (routing.LearnedRouter, routing.CascadeRouter, routing.NanoRouter) == (
        LearnedRouter,
        CascadeRouter,
        NanoRouter,
    )
    assert set(routing.__all__) >= {"PolicyRouter", "LearnedModel", "Outcomes"}
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = routing.Nope
