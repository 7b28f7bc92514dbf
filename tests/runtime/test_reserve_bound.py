"""Reservations: on byte counts where no cap limits spend (never below the tokenizer's count), on the
tokenizer's count under a money or token cap, so as many calls fit under it as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierwise import BudgetExceeded, Session
from tierwise.core import Message, Task, TaskKind, Tier
from tierwise.models.tokens import bound_messages, bound_texts, count_messages, count_texts
from tierwise.providers.base import Request
from tierwise.runtime import Budget, Caps
from tierwise.runtime.attempt import input_bound, input_estimate
from tierwise.testing import ChaosServer

PROMPT = "Classify this support ticket: " + "my card was charged twice for the same order. " * 40


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=4))
def test_the_byte_bound_is_never_below_the_token_count(texts: list[str]) -> None:
    assert bound_texts(texts) >= sum(count_texts(texts))
    messages = [Message("user", t) for t in texts]
    assert bound_messages(messages) >= count_messages(messages)


def test_the_bound_counts_schemas_and_tools_like_the_estimate() -> None:
    from tierwise.models.spec import ModelSpec

    spec = ModelSpec(id="x/y", provider="x", name="y", tier=Tier.NANO, max_output_tokens=100)
    plain = Request(model=spec, messages=(Message("user", "hello"),), max_output_tokens=100)
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}}}
    structured = Request(model=spec, messages=plain.messages, max_output_tokens=100, json_schema=schema)
    assert input_bound(structured) - input_bound(plain) >= len(str(schema)) - 10
    assert input_estimate(structured) > input_estimate(plain)


async def _worst_cases(s: Session) -> tuple[float, float]:
    """The nano model's worst case for PROMPT, on the byte bound and on the tokenizer's estimate."""
    assert s.runtime is not None
    spec = s.runtime.catalog.get(s.runtime.tiers[Tier.NANO])
    task = Task(input=PROMPT, kind=TaskKind.CLASSIFY)
    out = spec.max_output_tokens
    request = Request(model=spec, messages=task.messages(), max_output_tokens=out)
    bound = spec.worst_case_cost(input_bound(request), out)
    exact = spec.worst_case_cost(input_estimate(request), out)
    assert bound is not None and exact is not None and bound > exact
    return bound, exact


def test_which_budgets_cap_spend() -> None:
    process = Budget(Caps(usd=5.0), name="process")
    assert process.child().caps_spend and Budget(Caps(tokens=10)).caps_spend
    free = Budget()
    assert not free.child().caps_spend and not Budget(Caps(calls=3)).caps_spend
    assert free.view(Caps(usd=1.0)).child().caps_spend  # a per-process cap over the totals


async def test_under_a_cap_the_tokenizer_count_is_reserved(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    async with Session(chaos_toml) as s:
        bound, exact = await _worst_cases(s)
        # Room for the tokenizer's worst case, not for the byte bound's: the call is sent.
        async with s.run("fits", budget_usd=(bound + exact) / 2) as scope:
            r = await s.call(PROMPT, kind="classify", run=scope)
        assert r.tier == Tier.NANO
        assert len(chaos_server.requests("/v1/chat/completions")) == 1
        # Room for neither: refused before anything is sent.
        with pytest.raises(BudgetExceeded, match="worst case"):
            async with s.run("short", budget_usd=exact * 0.9) as scope:
                await s.call(PROMPT, kind="classify", run=scope)
    assert len(chaos_server.requests("/v1/chat/completions")) == 1
