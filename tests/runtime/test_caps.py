"""Money caps that cannot be passed: settle against the cap, per-process caps per session, timeouts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tierwise import BudgetExceeded, ProviderError, Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer


def _ledger(toml: Path) -> Ledger:
    return Ledger(Config.load(toml).ledger.url)


async def test_a_provider_billing_past_the_estimate_overruns_once_and_stops_the_run(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    # The provider bills 200,000 input tokens for a one-line prompt: $0.04 on nano against a $0.01 cap.
    chaos_server.set_script({"rules": [{"reply": {"text": "ok", "usage": {"prompt_tokens": 200_000}}}]})
    async with Session(chaos_toml) as s:
        with pytest.raises(BudgetExceeded, match="overrun"):
            async with s.run("probe", budget_usd=0.01) as scope:
                first = await s.call("Classify: card stolen", kind="classify", run=scope)
                assert first.cost_usd == pytest.approx(0.04, rel=0.01)
                await s.call("Classify: password reset", kind="classify", run=scope)
    with _ledger(chaos_toml) as ledger:
        run = ledger.get_run(scope.id)
        calls = ledger.calls(run_id=scope.id)
    assert run.status == "overrun" and "overrun by $0.03" in (run.error or "")
    statuses = [c.status for c in calls]
    assert statuses.count("ok") == 1, statuses  # the second call was never sent
    overrun = next(c for c in calls if c.status == "overrun")
    assert overrun.metadata["overrun_usd"] == pytest.approx(0.03, rel=0.02)
    # The overshoot is bounded by the one call that passed the cap.
    assert sum(c.cost_usd or 0 for c in calls) == pytest.approx(first.cost_usd)
    assert len(chaos_server.requests("/v1/chat/completions")) == 1


async def test_an_overrun_run_with_no_further_call_still_ends_overrun(
    chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"rules": [{"reply": {"text": "ok", "usage": {"prompt_tokens": 200_000}}}]})
    async with Session(chaos_toml) as s, s.run("probe", budget_usd=0.01) as scope:
        await s.call("Classify: card stolen", kind="classify", run=scope)
    with _ledger(chaos_toml) as ledger:
        assert ledger.get_run(scope.id).status == "overrun"


async def test_each_sessions_per_process_cap_applies_to_the_process_total(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    free = tmp_path / "free.toml"
    free.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/a.db"))
    capped = tmp_path / "capped.toml"
    capped.write_text(
        chaos_config(
            chaos_server.base_url, f"sqlite:///{tmp_path}/b.db", "[budget]\nper_process_usd = 0.00001\n"
        )
    )
    # The first session of the process has no per-process cap; the second one's cap must still hold.
    async with Session(free) as a:
        await a.call("Classify: card stolen", kind="classify")
        async with Session(capped) as b:
            with pytest.raises(BudgetExceeded, match="process budget"):
                await b.call("Classify: card stolen", kind="classify")


async def test_provider_timeout_is_honoured(tmp_path: Path, chaos_server: ChaosServer) -> None:
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db").replace(
        "timeout_s = 2.0", "timeout_s = 0.3"
    ))  # fmt: skip
    chaos_server.set_script({"faults": [{"fault": {"kind": "hang", "hang_s": 30}, "probability": 1.0}]})
    started = time.perf_counter()
    async with Session(toml) as s:
        with pytest.raises(ProviderError):
            await s.call("Classify: card stolen", kind="classify", tier="nano")
    # Every attempt waits the provider's 0.3 s, not the former fixed 60 s per attempt.
    assert time.perf_counter() - started < 8


async def test_a_refused_call_costs_zero_not_unknown(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    async with Session(chaos_toml, budget_usd=1e-9) as s:
        with pytest.raises(BudgetExceeded):
            await s.call("Classify: card stolen", kind="classify")
        with _ledger(chaos_toml) as ledger:
            (call,) = ledger.calls()
            assert call.status == "refused" and call.cost_usd == 0.0
            assert ledger.run_summary(call.run_id)["cost_usd"] == 0.0
