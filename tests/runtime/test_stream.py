"""Stream has parity with call: the same layers (retries until the first token, fallback, budget, rate
limit, validation with repair) against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from tierwise import BudgetExceeded, Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer


class Ticket(BaseModel):
    urgency: str


def _calls(toml: Path, run_id: str) -> list:
    with Ledger(Config.load(toml).ledger.url) as ledger:
        return ledger.calls(run_id=run_id)


async def test_stream_yields_deltas_and_records_usage_like_call(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(
        {
            "rules": [
                {"reply": {"text": "one two three", "usage": {"prompt_tokens": 50, "completion_tokens": 3}}}
            ]
        }
    )
    async with Session(chaos_toml) as s, s.run("test", "stream") as scope:
        stream = scope.stream("Say three words", kind="classify")
        parts = [d async for d in stream]
        run_id = scope.id
    assert "".join(parts) == "one two three" and len(parts) > 1
    assert stream.result is not None and stream.result.tier == "nano"
    expected = (50 * 0.20 + 3 * 1.25) / 1e6
    assert stream.result.cost_usd == pytest.approx(expected)
    calls = _calls(chaos_toml, run_id)
    assert [(c.operation, c.status, c.input_tokens, c.output_tokens) for c in calls] == [
        ("stream", "ok", 50, 3)
    ]
    assert calls[0].cost_usd == pytest.approx(expected) and calls[0].metadata.get("usage_estimated") is False


async def test_stream_retries_a_429_before_the_first_token(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(
        {
            "faults": [{"fault": {"kind": "rate_limit", "retry_after_s": 0.01}, "first": 1}],
            "rules": [{"reply": "fine"}],
        }
    )
    async with Session(chaos_toml) as s, s.run("test", "stream") as scope:
        text = "".join([d async for d in scope.stream("Say fine", kind="classify")])
        run_id = scope.id
    assert text == "fine"
    calls = _calls(chaos_toml, run_id)
    assert [(c.status, c.attempt, c.tier) for c in calls] == [("error", 1, "nano"), ("ok", 2, "nano")]
    assert len(chaos_server.requests("/v1/chat/completions")) == 2


async def test_stream_falls_back_up_a_tier_when_the_model_keeps_failing(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(
        {
            "faults": [{"fault": "http_503", "every": 1, "model": "nano-model"}],
            "rules": [{"reply": "from mini"}],
        }
    )
    async with Session(chaos_toml) as s, s.run("test", "stream") as scope:
        stream = scope.stream("Label it", kind="classify")
        text = "".join([d async for d in stream])
    assert text == "from mini"
    assert stream.result is not None and stream.result.model == "chaos/mini"
    assert "fell back to chaos/mini" in stream.result.decision.reason


async def test_stream_is_refused_before_sending_when_the_budget_cannot_cover_it(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"rules": [{"reply": "never sent"}]})
    async with Session(chaos_toml) as s:
        with pytest.raises(BudgetExceeded):
            async with s.run("test", "stream", budget_usd=1e-9) as scope:
                run_id = scope.id
                async for _ in scope.stream("Say something", kind="classify"):
                    pass
    assert chaos_server.requests("/v1/chat/completions") == []
    assert [c.status for c in _calls(chaos_toml, run_id)] == ["refused"]


async def test_structured_stream_is_validated_and_repaired_never_unvalidated(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"user_contains": "failed validation"}, "reply": {"json": {"urgency": "high"}}},
                {"reply": {"text": '{"urgency": '}},
            ]
        }
    )
    async with Session(chaos_toml) as s, s.run("test", "stream") as scope:
        stream = scope.stream("Urgency of: card stolen", kind="classify", schema=Ticket)
        parts = [d async for d in stream]
        run_id = scope.id
    assert parts == ['{"urgency": "high"}'] or [p.replace(" ", "") for p in parts] == ['{"urgency":"high"}']
    assert stream.result is not None and stream.result.output == Ticket(urgency="high")
    assert [c.status for c in _calls(chaos_toml, run_id)] == ["invalid_output", "ok"]
