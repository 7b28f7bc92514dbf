"""The one path against a real OpenAI-compatible server on loopback (our chaos server), via the SDK."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from tierwise import BudgetExceeded, InvalidOutput, ProviderError, Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer


class Ticket(BaseModel):
    urgency: str
    category: str


def _ledger(toml: Path) -> Ledger:
    return Ledger(Config.load(toml).ledger.url)


def _chat_requests(server: ChaosServer) -> list[dict]:
    return server.requests("/v1/chat/completions")


async def test_call_is_routed_metered_and_recorded(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(
        {
            "rules": [
                {
                    "reply": {
                        "text": "urgent",
                        "served_model": "nano-model-2026-01-01",
                        "usage": {"prompt_tokens": 1000, "completion_tokens": 10, "cached_tokens": 400},
                    }
                }
            ]
        }
    )
    async with Session(chaos_toml) as s:
        result = await s.call("Classify this ticket by urgency: card stolen", kind="classify")
    assert result.text == "urgent"
    assert (result.tier, result.model, result.served_model) == ("nano", "chaos/nano", "nano-model-2026-01-01")
    assert result.usage.cached_input_tokens == 400
    assert result.cost_usd == pytest.approx((600 * 0.20 + 400 * 0.02 + 10 * 1.25) / 1e6)
    with _ledger(chaos_toml) as ledger:
        calls = ledger.calls(run_id=result.run_id)
        run = ledger.get_run(result.run_id)
    assert run.status == "ok"
    assert [(c.status, c.model, c.served_model, c.cached_input_tokens) for c in calls] == [
        ("ok", "chaos/nano", "nano-model-2026-01-01", 400)
    ]
    assert calls[0].reason and calls[0].cost_usd == pytest.approx(result.cost_usd)


async def test_structured_output_is_validated(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    async with Session(chaos_toml) as s:
        result = await s.call("Triage: my card was stolen", kind="classify", schema=Ticket)
    assert isinstance(result.output, Ticket)
    body = _chat_requests(chaos_server)[-1]["body"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["urgency", "category"]


async def test_invalid_output_gets_a_repair_prompt_quoting_the_error(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"rules": [{"times": 1, "reply": {"json": {"urgency": "high"}}}]})
    async with Session(chaos_toml) as s:
        result = await s.call("Triage: my card was stolen", kind="classify", schema=Ticket)
    assert isinstance(result.output, Ticket) and result.model == "chaos/nano"
    repair = _chat_requests(chaos_server)[-1]["body"]["messages"][-1]["content"]
    assert "failed validation" in repair and "category" in repair
    with _ledger(chaos_toml) as ledger:
        statuses = [c.status for c in ledger.calls(run_id=result.run_id)]
    assert statuses == ["invalid_output", "ok"]


async def test_persistent_invalid_output_escalates_a_tier(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"rules": [{"match": {"model": "nano-model"}, "reply": {"text": "not json"}}]})
    async with Session(chaos_toml) as s:
        result = await s.call("Triage: my card was stolen", kind="classify", schema=Ticket)
    assert result.model == "chaos/mini" and result.tier == "mini"
    assert "escalated to mini" in result.decision.reason and result.escalations
    with _ledger(chaos_toml) as ledger:
        calls = ledger.calls(run_id=result.run_id)
    assert [(c.model, c.status) for c in calls] == [
        ("chaos/nano", "invalid_output"),
        ("chaos/nano", "invalid_output"),
        ("chaos/mini", "ok"),
    ]
    assert result.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))


async def test_invalid_output_at_the_top_fails_clearly(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"rules": [{"reply": {"text": "not json"}}]})
    async with Session(chaos_toml) as s:
        with pytest.raises(InvalidOutput, match="no tier above"):
            await s.call("Plan it", kind="plan", schema=Ticket)


async def test_429_is_retried_after_retry_after(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(
        {"faults": [{"first": 2, "fault": {"kind": "rate_limit", "retry_after_s": 0.15}}]}
    )
    async with Session(chaos_toml) as s:
        started = time.perf_counter()
        result = await s.call("hello", kind="classify")
        elapsed = time.perf_counter() - started
    assert result.attempts == 3 and result.model == "chaos/nano"
    assert elapsed >= 0.3  # waited the server's Retry-After twice, not the tiny configured backoff
    with _ledger(chaos_toml) as ledger:
        calls = ledger.calls(run_id=result.run_id)
    assert [c.status for c in calls] == ["error", "error", "ok"]
    assert "429" in (calls[0].error or "")


@pytest.mark.parametrize("fault", ["http_500", "http_503", "malformed_json", "missing_choices", "drop"])
async def test_transient_faults_are_retried(chaos_toml: Path, chaos_server: ChaosServer, fault: str) -> None:
    chaos_server.set_script({"faults": [{"first": 1, "fault": fault}]})
    async with Session(chaos_toml) as s:
        result = await s.call("hello", kind="classify")
    assert result.attempts == 2 and result.model == "chaos/nano"


async def test_timeout_is_retried(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"faults": [{"first": 1, "fault": {"kind": "hang", "hang_s": 5}}]})
    async with Session(chaos_toml) as s:
        result = await s.call("hello", kind="classify")
    assert result.attempts == 2


async def test_a_model_that_keeps_failing_falls_back(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"faults": [{"every": 1, "model": "nano-model", "fault": "http_503"}]})
    async with Session(chaos_toml) as s:
        result = await s.call("hello", kind="classify")
    assert result.model == "chaos/mini"
    assert "fell back to chaos/mini" in result.decision.reason
    nano_calls = [r for r in _chat_requests(chaos_server) if r["model"] == "nano-model"]
    assert len(nano_calls) == 3  # max_attempts, one retry loop: no retry storm


async def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    from tests.conftest import chaos_config

    with ChaosServer(require_key="right-key") as server:
        toml = tmp_path / "tierwise.toml"
        toml.write_text(chaos_config(server.base_url, f"sqlite:///{tmp_path}/l.db"))
        async with Session(toml) as s:
            with pytest.raises(ProviderError, match="401"):
                await s.call("hello", kind="classify")
    with _ledger(toml) as ledger:
        assert [c.status for c in ledger.calls()] == ["error"]


async def test_budget_too_small_is_refused_before_any_request(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    async with Session(chaos_toml, budget_usd=1e-7) as s:
        with pytest.raises(BudgetExceeded, match="worst case"):
            await s.call("hello", kind="plan")
    assert _chat_requests(chaos_server) == []


async def test_concurrent_calls_never_exceed_the_run_budget(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"latency_s": 0.05})
    cap = 0.0015  # worst case of one nano call is ~0.00026: only a few fit at once
    async with Session(chaos_toml) as s, s.run("test", budget_usd=cap) as run:
        outcomes = await asyncio.gather(
            *(s.call(f"item {i}", kind="classify", run=run) for i in range(40)), return_exceptions=True
        )
        spent = run.budget.spent_usd
    ok = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    assert ok and refused and len(ok) + len(refused) == 40
    assert spent <= cap
    assert len(_chat_requests(chaos_server)) == len(ok)


async def test_secrets_never_reach_the_ledger(tmp_path: Path, chaos_server: ChaosServer) -> None:
    from tests.conftest import chaos_config

    toml = tmp_path / "tierwise.toml"
    toml.write_text(
        chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db").replace(
            "[ledger]\n", "[ledger]\nstore_prompts = true\n"
        )
    )
    secret = "sk-proj-" + "A1b2C3d4" * 6
    chaos_server.set_script({"rules": [{"reply": {"text": f"your key is {secret}"}}]})
    async with Session(toml) as s:
        result = await s.call(f"my key is {secret}, classify it", kind="classify")
    with _ledger(toml) as ledger:
        call = ledger.calls(run_id=result.run_id)[0]
        run = ledger.get_run(result.run_id)
    assert call.prompt is not None and "classify it" in call.prompt
    for stored in (call.prompt, call.output, run.label):
        assert secret not in (stored or "")


async def test_remote_model_without_key_says_which_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    toml = tmp_path / "tierwise.toml"
    toml.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path}/l.db"\n[tiers]\nnano = "openai/gpt-5.4-nano"\n')
    async with Session(toml) as s:
        with pytest.raises(ProviderError, match="set OPENAI_API_KEY"):
            await s.call("hello", kind="classify")


async def test_tool_calls_are_not_validated_against_the_output_schema(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    from dataclasses import replace

    from tierwise.providers import ToolSpec

    chaos_server.set_script(
        {"rules": [{"reply": {"tool_calls": [{"name": "read", "arguments": {"path": "a"}}]}}]}
    )
    tool = ToolSpec("read", "read a file", {"type": "object", "properties": {"path": {"type": "string"}}})
    async with Session(chaos_toml) as s:
        task = replace(s.task("look at a", kind="tool_op", schema=Ticket), tools=(tool,))
        result = await s.call(task)
    assert result.output is None and [c.name for c in result.tool_calls] == ["read"]
    assert result.attempts == 1 and not result.escalations
