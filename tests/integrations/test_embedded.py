"""Once on the embedded default (no config, no key, no network): one short Agents SDK run, one tierwise
run served by the local models (slow on 2 cores, so one call)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierwise import Session

pytestmark = pytest.mark.local_model


@pytest.fixture()
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("llama_cpp")
    toml = tmp_path / "tierwise.toml"
    toml.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path}/ledger.db"\n')
    monkeypatch.setenv("TIERWISE_CONFIG", str(toml))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def test_an_agents_sdk_run_on_the_embedded_default(embedded: Path) -> None:
    pytest.importorskip("agents")
    from agents import Agent, ModelSettings, RunConfig, Runner, set_tracing_disabled

    from tierwise.integrations.agents import provider

    set_tracing_disabled(True)
    # nano and a short answer keep the in-process model's share of the test small
    settings = ModelSettings(max_tokens=16, metadata={"tierwise_kind": "classify"})
    agent = Agent(
        name="greeter", instructions="Reply in one sentence.", model="tierwise/nano", model_settings=settings
    )
    async with Session() as s:
        result = await Runner.run(agent, "Say hello.", run_config=RunConfig(model_provider=provider(s)))
        assert s.ledger is not None
        [run] = [r for r in s.ledger.runs() if r.kind == "agents"]
        calls = [c for c in s.ledger.calls(run_id=run.id) if c.operation == "chat"]
    assert isinstance(result.final_output, str) and result.final_output.strip()
    assert run.status == "ok"
    assert [(c.tier, c.provider, c.status) for c in calls] == [("nano", "local", "ok")]
    assert calls[0].notional and (calls[0].cost_usd or 0) > 0
    assert result.context_wrapper.usage.output_tokens == calls[0].output_tokens > 0
