"""Provider faults: siblings before tier-up, never large by default, bounded amplification, breakers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tierwise import ProviderError, Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer

_SIBLING = """
[[models]]
id = "chaos/nano-b"
provider = "chaos"
name = "nano-b-model"
tier = "nano"
input_per_mtok = 0.20
cached_input_per_mtok = 0.02
output_per_mtok = 1.25
context_window = 2000
max_output_tokens = 200
capabilities = ["json_schema"]
"""


def _toml(tmp_path: Path, server: ChaosServer, extra: str = "") -> Path:
    path = tmp_path / "tierwise.toml"
    text = chaos_config(server.base_url, f"sqlite:///{tmp_path}/ledger.db", extra)
    path.write_text(text)
    return path


def _down(*models: str, kind: str = "http_503") -> dict:
    fault = {"kind": kind, "retry_after_s": 0}
    return {"faults": [{"fault": fault, "probability": 1.0, "model": m} for m in models]}


def _models_hit(server: ChaosServer) -> list[str]:
    return [r["body"]["model"] for r in server.requests("/v1/chat/completions")]


async def test_a_rate_limited_model_falls_back_to_a_sibling_of_its_tier(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(_down("nano-model", kind="rate_limit"))
    async with Session(_toml(tmp_path, chaos_server, _SIBLING)) as s:
        result = await s.call("Classify: card stolen", kind="classify")
    assert (result.tier, result.model) == ("nano", "chaos/nano-b")
    assert set(_models_hit(chaos_server)) == {"nano-model", "nano-b-model"}


async def test_an_outage_never_reaches_large_and_sends_at_most_the_call_budget(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(_down("nano-model", "mini-model", "large-model"))
    async with Session(_toml(tmp_path, chaos_server)) as s:
        with pytest.raises(ProviderError):
            await s.call("Classify: card stolen", kind="classify")
    hit = _models_hit(chaos_server)
    assert "large-model" not in hit  # nano work is never served (or paid) at large prices by default
    assert len(hit) <= Config.load(tmp_path / "tierwise.toml").retry.max_requests_per_call


async def test_the_users_fallback_chain_may_name_large(tmp_path: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(_down("nano-model"))
    extra = '[routing.fallbacks]\n"chaos/nano" = ["chaos/large"]\n'
    async with Session(_toml(tmp_path, chaos_server, extra)) as s:
        result = await s.call("Classify: card stolen", kind="classify")
    assert result.model == "chaos/large"


async def test_a_runs_retry_budget_bounds_amplification_in_an_outage(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(_down("nano-model", "mini-model", "large-model"))
    toml = _toml(tmp_path, chaos_server)
    retry = Config.load(toml).retry
    calls = 60
    async with Session(toml) as s, s.run("outage") as scope:

        async def one() -> None:
            with pytest.raises(ProviderError):
                await s.call("Classify: card stolen", kind="classify", run=scope)

        await asyncio.gather(*(one() for _ in range(calls)))
    sent = len(_models_hit(chaos_server))
    bound = calls + retry.run_min_retries + retry.run_retry_ratio * calls
    assert sent <= bound, f"{sent} requests for {calls} calls (bound {bound:.0f})"
    # Before retry budgets: 3 attempts x 2 tiers (x3 with large) per call.
    assert sent < calls * retry.max_attempts


async def test_a_circuit_breaker_skips_a_failing_model_then_probes_it(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    extra = "breaker_failures = 2\nbreaker_cooldown_s = 3\n"
    toml = tmp_path / "tierwise.toml"
    text = chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db")
    toml.write_text(text.replace("[retry]\n", "[retry]\n" + extra))
    chaos_server.set_script(_down("nano-model"))
    async with Session(toml) as s:
        first = await s.call("Classify: card stolen", kind="classify")
        assert first.model == "chaos/mini"
        before = _models_hit(chaos_server).count("nano-model")
        assert before == 2  # opened after two failures, not after all three attempts
        for _ in range(3):
            assert (await s.call("Classify: card stolen", kind="classify")).model == "chaos/mini"
        assert _models_hit(chaos_server).count("nano-model") == before  # open: nano is not even tried
        with Ledger(Config.load(toml).ledger.url) as ledger:
            assert {c["model"]: c["state"] for c in ledger.circuits()} == {"chaos/nano": "open"}
        chaos_server.set_script({})  # nano recovers
        await asyncio.sleep(3.1)
        probe = await s.call("Classify: card stolen", kind="classify")
        assert probe.model == "chaos/nano"
        with Ledger(Config.load(toml).ledger.url) as ledger:
            assert {c["model"]: c["state"] for c in ledger.circuits()} == {"chaos/nano": "closed"}
