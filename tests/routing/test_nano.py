"""The nano router: the nano model's kind and tier, and the offline similarity fallback."""

from __future__ import annotations

import pytest

from tierwise.core import Stakes, Task, TaskKind, Tier
from tierwise.errors import ProviderError
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.routing.base import Router
from tierwise.routing.nano import NanoRouter, parse_reply

TIERS = {Tier.LARGE: "t/large", Tier.MINI: "t/mini", Tier.NANO: "t/nano"}


def _catalog() -> Catalog:
    return Catalog(ModelSpec(id=m, provider="t", name=m[2:], tier=t) for t, m in TIERS.items())


def test_parse_reply() -> None:
    assert parse_reply('sure: {"kind": "extract", "tier": "nano"}') == (TaskKind.EXTRACT, Tier.NANO, False)
    with pytest.raises(ValueError, match="unknown kind"):
        parse_reply('{"kind": "dance", "tier": "nano"}')
    with pytest.raises(ValueError, match="not JSON"):
        parse_reply("nano, I think")


async def test_nano_model_picks_kind_and_tier() -> None:
    asked: list[Task] = []

    async def call(task: Task) -> str:
        asked.append(task)
        return '{"kind": "classify", "tier": "nano", "ambiguous": false}'

    router = NanoRouter(_catalog(), TIERS, call=call)
    assert isinstance(router, Router)
    d = await router.route(Task("Label this email as spam or not"))
    assert (d.kind, d.tier, d.model) == (TaskKind.CLASSIFY, Tier.NANO, "t/nano")
    assert asked[0].model == "t/nano" and "nano model t/nano" in d.reason
    high = await router.route(Task("Label this email", stakes=Stakes.HIGH))
    assert high.tier is Tier.MINI


async def test_ambiguity_raises_to_large_and_failures_fall_back_offline() -> None:
    async def vague(task: Task) -> str:
        return '{"kind": "classify", "tier": "nano", "ambiguous": true}'

    d = await NanoRouter(_catalog(), TIERS, call=vague).route(Task("do the thing"))
    assert d.tier is Tier.LARGE

    async def broken(task: Task) -> str:
        raise ProviderError("nano is down", retryable=True)

    fallback = await NanoRouter(_catalog(), TIERS, call=broken).route(
        Task("Extract the order number and the date from this message")
    )
    assert fallback.reason.startswith("nano model unavailable (nano is down); offline: kind")
    assert fallback.router == "nano"


def test_offline_route_and_pins() -> None:
    router = NanoRouter(_catalog(), TIERS)
    d = router.decide_offline(
        Task("Plan the migration of our billing service to the new database, step by step")
    )
    assert d.kind is TaskKind.PLAN and d.tier is Tier.LARGE and d.reason.startswith("offline: kind plan")
    assert router.decide_offline(Task("x", model="t/mini")).model == "t/mini"
    assert router.decide_offline(Task("x", kind=TaskKind.RANK)).tier is Tier.NANO
