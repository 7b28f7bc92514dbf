"""Routers that need a model run live, through the runtime's metered call, on a real OpenAI-compatible
server on loopback (the chaos server with scripted replies): the cascade's validators, the nano router,
and the config errors that stop a cascade that cannot judge free text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierwise import Session
from tierwise.config import Config
from tierwise.errors import ConfigError
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer

from ..conftest import chaos_config


def _toml(tmp_path: Path, server: ChaosServer, extra: str) -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(chaos_config(server.base_url, f"sqlite:///{tmp_path}/ledger.db", extra))
    return path


def _calls(toml: Path, run_id: str) -> list:
    with Ledger(Config.load(toml).ledger.url) as ledger:
        return ledger.calls(run_id=run_id)


CASCADE_AGREEMENT = """
[routing]
router = "cascade"
[routing.cascade]
validators = ["agreement"]
tau = 0.6
"""


async def test_cascade_escalates_when_two_cheap_samples_disagree(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    # nano answers differently each time it is asked (no agreement); mini answers the same twice.
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"model": "nano-model"}, "reply": "the refund takes five days", "times": 1},
                {"match": {"model": "nano-model"}, "reply": "call the branch tomorrow"},
                {"match": {"model": "mini-model"}, "reply": "refunds arrive within five working days"},
            ]
        }
    )
    toml = _toml(tmp_path, chaos_server, CASCADE_AGREEMENT)
    async with Session(toml) as s:
        result = await s.call("How long does a refund take?", kind="read_docs")
    assert (result.tier, result.text) == ("mini", "refunds arrive within five working days")
    assert any("agreement confidence" in e for e in result.escalations)
    calls = _calls(toml, result.run_id)
    rows = [(c.operation, c.status, c.tier) for c in calls]
    # nano's answer, its second sample (a routing call), the rejection; mini's answer and its sample.
    assert rows == [
        ("route", "ok", "nano"),
        ("chat", "rejected", "nano"),
        ("route", "ok", "mini"),
        ("chat", "ok", "mini"),
    ]
    rejected = calls[1]
    assert "cascade: cheapest first" in rejected.reason and "agreement confidence" in (rejected.error or "")
    assert "escalated to chaos/mini" in calls[3].reason
    # The second sample is drawn with temperature > 0.
    bodies = [r["body"] for r in chaos_server.requests("/v1/chat/completions")]
    assert [b.get("temperature") for b in bodies] == [None, 0.7, None, 0.7]


async def test_cascade_accepts_on_nano_when_the_samples_agree(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"rules": [{"reply": "refunds take five days"}]})
    toml = _toml(tmp_path, chaos_server, CASCADE_AGREEMENT)
    async with Session(toml) as s:
        result = await s.call("How long does a refund take?", kind="read_docs")
    assert result.tier == "nano" and result.escalations == ()
    ok = [c for c in _calls(toml, result.run_id) if c.operation == "chat"]
    assert [(c.status, c.tier) for c in ok] == [("ok", "nano")] and ok[0].metadata["confidence"] == 1.0


async def test_cascade_judge_on_a_higher_tier_decides(tmp_path: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"model": "large-model", "user_contains": "nano draft"}, "reply": "no"},
                {"match": {"model": "large-model", "user_contains": "mini draft"}, "reply": "yes"},
                {"match": {"model": "nano-model"}, "reply": "nano draft"},
                {"match": {"model": "mini-model"}, "reply": "mini draft"},
            ]
        }
    )
    toml = _toml(
        tmp_path,
        chaos_server,
        '[routing]\nrouter = "cascade"\n[routing.cascade]\nvalidators = ["judge"]\njudge_tier = "large"\n',
    )
    async with Session(toml) as s:
        result = await s.call("Draft a reply to: where is my card?", kind="read_docs")
    assert (result.tier, result.text) == ("mini", "mini draft")
    rows = [(c.operation, c.status, c.tier) for c in _calls(toml, result.run_id)]
    assert rows == [
        ("route", "ok", "large"),
        ("chat", "rejected", "nano"),
        ("route", "ok", "large"),
        ("chat", "ok", "mini"),
    ]


def test_a_cascade_that_cannot_judge_free_text_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"routing.cascade.validators = \['schema'\] cannot judge free text"
    ):
        Config.from_dict({"routing": {"router": "cascade", "cascade": {"validators": ["schema"]}}})


def test_routing_to_unknown_kinds_or_models_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"routing.kinds.summarise: unknown task kind"):
        Config.from_dict({"routing": {"kinds": {"summarise": "mini"}}})
    with pytest.raises(ConfigError, match=r"routing.rules\[0\].model = 'nope/x' is not a known model"):
        Config.from_dict({"routing": {"rules": [{"contains": "x", "model": "nope/x"}]}})
    bad = tmp_path / "router.npz"
    bad.write_bytes(b"not a router")
    with pytest.raises(ConfigError, match=r"routing.learned_model = .*router.npz"):
        from tierwise.routing.factory import build_router

        build_router(Config.from_dict({"routing": {"router": "learned", "learned_model": str(bad)}}))


async def test_nano_router_reads_the_task_live_and_says_why(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(
        {
            "rules": [
                {
                    "match": {"model": "nano-model", "user_contains": "You route work"},
                    "reply": {"json": {"kind": "extract", "tier": "mini", "reason": "long legal text"}},
                },
                {"reply": "done"},
            ]
        }
    )
    toml = _toml(tmp_path, chaos_server, '[routing]\nrouter = "nano"\n')
    async with Session(toml) as s:
        assert s.router_calls_model
        decision = await s.route("Extract the parties from this contract", kind="extract")
        result = await s.call("Extract the parties from this contract", kind="extract")
    assert decision.tier.value == "mini" and decision.routing_calls == 1
    assert "nano model chaos/nano: kind extract, tier mini (long legal text)" in decision.reason
    assert result.tier == "mini"
    rows = [(c.operation, c.tier, c.status) for c in _calls(toml, result.run_id)]
    assert rows == [("route", "nano", "ok"), ("chat", "mini", "ok")]
