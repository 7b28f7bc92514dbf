"""The real OpenAI Agents SDK on tierwise's provider, against the chaos server on loopback: a planner that
hands off to (or calls as tools) executor agents with function tools, exact tiers and reasons in the
ledger, tool round trips, structured output, streaming, usage, budget refusals and bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

agents = pytest.importorskip("agents")

from agents import Agent, ModelSettings, RunConfig, Runner, function_tool, set_tracing_disabled  # noqa: E402
from openai.types.responses import ResponseTextDeltaEvent  # noqa: E402

from tierwise import BudgetExceeded, Session  # noqa: E402
from tierwise.config import Config  # noqa: E402
from tierwise.errors import ConfigError, InputError  # noqa: E402
from tierwise.integrations import agents as tw_agents  # noqa: E402
from tierwise.integrations.versions import require  # noqa: E402
from tierwise.ledger import Ledger  # noqa: E402
from tierwise.ledger.records import CallRecord, RunRecord  # noqa: E402
from tierwise.testing import ChaosServer  # noqa: E402

set_tracing_disabled(True)  # no trace export: tests make no network calls but loopback


@function_tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@function_tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def calculator(model: str = "tierwise/auto") -> Agent[Any]:
    return Agent(name="calculator", instructions="You are the calculator. Use add.", tools=[add], model=model)


def writer(model: str = "tierwise/auto") -> Agent[Any]:
    return Agent(name="writer", instructions="You are the writer. Use shout.", tools=[shout], model=model)


def runs_and_calls(toml: Path) -> list[tuple[RunRecord, list[CallRecord]]]:
    with Ledger(Config.load(toml).ledger.url) as ledger:
        return [(r, ledger.calls(run_id=r.id)) for r in ledger.runs() if r.kind == "agents"]


def chat_bodies(chaos: ChaosServer) -> list[dict[str, Any]]:
    return [e["body"] for e in chaos.requests("/v1/chat/completions")]


@pytest_asyncio.fixture(loop_scope="function")
async def session(chaos_toml: Path) -> AsyncIterator[Session]:
    async with Session(chaos_toml) as s:
        yield s


HANDOFF_SCRIPT = {
    "rules": [
        {"match": {"system_contains": "You are the planner"}, "times": 1,
         "reply": {"tool_calls": [{"name": "transfer_to_calculator", "arguments": {}, "id": "call_h"}]}},
        {"match": {"system_contains": "You are the calculator"}, "times": 1,
         "reply": {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_add"}]}},
        {"match": {"system_contains": "You are the calculator"}, "reply": "The sum is 5."},
    ]
}  # fmt: skip


async def test_planner_hands_off_to_an_executor_whose_tool_round_trips(
    session: Session, chaos_server: ChaosServer, chaos_toml: Path
) -> None:
    chaos_server.set_script(HANDOFF_SCRIPT)
    planner = Agent(
        name="planner",
        instructions="You are the planner. Hand the work to the right agent.",
        handoffs=[calculator(), writer()],
        model="tierwise/auto",
    )
    result = await Runner.run(
        planner, "What is 2 + 3?", run_config=RunConfig(model_provider=tw_agents.provider(session))
    )
    assert result.final_output == "The sum is 5."
    assert result.last_agent.name == "calculator"
    [(run, calls)] = runs_and_calls(chaos_toml)
    assert run.status == "ok" and run.label == "What is 2 + 3?"
    # The planner (it can hand off) plans on large; the calculator (function tools) works on mini.
    assert [(c.tier, c.task_kind, c.model) for c in calls] == [
        ("large", "plan", "chaos/large"),
        ("mini", "tool_op", "chaos/mini"),
        ("mini", "tool_op", "chaos/mini"),
    ]
    assert all(c.reason for c in calls) and "plan" in calls[0].reason
    bodies = chat_bodies(chaos_server)
    assert [b["model"] for b in bodies] == ["large-model", "mini-model", "mini-model"]
    assert {t["function"]["name"] for t in bodies[0]["tools"]} == {
        "transfer_to_calculator",
        "transfer_to_writer",
    }
    # The tool's result went back to the model as a tool message answering the model's call id.
    [tool_msg] = [m for m in bodies[2]["messages"] if m["role"] == "tool" and m["tool_call_id"] == "call_add"]
    assert tool_msg["content"] == "5"
    # Usage reported back to the SDK equals what the ledger recorded.
    usage = result.context_wrapper.usage
    assert usage.requests == 3
    assert usage.input_tokens == sum(c.input_tokens for c in calls) > 0
    assert usage.output_tokens == sum(c.output_tokens for c in calls) > 0


AS_TOOLS_SCRIPT = {
    "rules": [
        {"match": {"system_contains": "You are the planner"}, "times": 1,
         "reply": {"tool_calls": [{"name": "calculate", "arguments": {"input": "2+3"}, "id": "call_c"},
                                  {"name": "write", "arguments": {"input": "hi"}, "id": "call_w"}]}},
        {"match": {"system_contains": "You are the planner"}, "reply": "Done: 5 and HI."},
        {"match": {"system_contains": "You are the calculator"}, "times": 1,
         "reply": {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}},
        {"match": {"system_contains": "You are the calculator"}, "reply": "5"},
        {"match": {"system_contains": "You are the writer"}, "times": 1,
         "reply": {"tool_calls": [{"name": "shout", "arguments": {"text": "hi"}}]}},
        {"match": {"system_contains": "You are the writer"}, "reply": "HI"},
    ]
}  # fmt: skip


def manager() -> Agent[Any]:
    return Agent(
        name="planner",
        instructions="You are the planner. Split the work between your agents.",
        tools=[
            calculator().as_tool("calculate", "Compute a sum."),
            writer().as_tool("write", "Write loudly."),
        ],
    )  # no model: the provider's default, tierwise/auto


async def test_a_planner_with_two_executor_agents_as_tools_is_one_run_with_one_budget(
    session: Session, chaos_server: ChaosServer, chaos_toml: Path
) -> None:
    chaos_server.set_script(AS_TOOLS_SCRIPT)
    result = await Runner.run(
        manager(),
        "Add 2 and 3, and shout hi.",
        run_config=RunConfig(model_provider=tw_agents.provider(session)),
    )
    assert result.final_output == "Done: 5 and HI."
    [(run, calls)] = runs_and_calls(chaos_toml)  # the sub-agents' Runner.runs joined the planner's run
    assert run.status == "ok"
    tiers = sorted((c.tier, c.task_kind) for c in calls)
    assert tiers == [("large", "plan")] * 2 + [("mini", "tool_op")] * 4
    assert all(c.status == "ok" for c in calls)


async def test_budget_refuses_mid_run_before_the_executor_call(
    session: Session, chaos_server: ChaosServer, chaos_toml: Path
) -> None:
    script = json.loads(json.dumps(HANDOFF_SCRIPT))
    # The planner's answer costs $0.015 of output: what is left cannot cover mini's worst case.
    script["rules"][0]["reply"]["usage"] = {"prompt_tokens": 100, "completion_tokens": 1000}
    chaos_server.set_script(script)
    planner = Agent(name="planner", instructions="You are the planner.", handoffs=[calculator()])
    with pytest.raises(BudgetExceeded):
        await Runner.run(
            planner, "What is 2 + 3?",
            run_config=RunConfig(model_provider=tw_agents.provider(session, budget_usd=0.0155)),
        )  # fmt: skip
    assert [b["model"] for b in chat_bodies(chaos_server)] == ["large-model"]  # nothing sent to mini
    [(run, calls)] = runs_and_calls(chaos_toml)
    assert run.status == "failed" and "BudgetExceeded" in (run.error or "")
    assert [(c.tier, c.status) for c in calls if c.status == "ok"] == [("large", "ok")]
    assert sum(c.cost_usd or 0 for c in calls) <= 0.0155


async def test_a_budget_too_small_for_the_first_call_sends_nothing(
    session: Session, chaos_server: ChaosServer, chaos_toml: Path
) -> None:
    with pytest.raises(BudgetExceeded) as err:
        await Runner.run(
            calculator(), "What is 2 + 3?",
            run_config=RunConfig(model_provider=tw_agents.provider(session, budget_usd=1e-7)),
        )  # fmt: skip
    assert "\n" not in str(err.value)
    assert chat_bodies(chaos_server) == []
    [(run, calls)] = runs_and_calls(chaos_toml)
    assert run.status == "failed" and all(c.status != "ok" for c in calls)


class Verdict(BaseModel):
    label: str
    score: int


async def test_structured_output_type_on_a_pinned_tier(
    session: Session, chaos_server: ChaosServer, chaos_toml: Path
) -> None:
    chaos_server.set_script({"rules": [{"reply": {"json": {"label": "urgent", "score": 3}}}]})
    agent = Agent(
        name="labeler", instructions="Label the ticket.", output_type=Verdict, model="tierwise/nano"
    )
    result = await Runner.run(
        agent, "The site is down!", run_config=RunConfig(model_provider=tw_agents.provider(session))
    )
    assert result.final_output == Verdict(label="urgent", score=3)
    [body] = chat_bodies(chaos_server)
    assert body["model"] == "nano-model" and body["response_format"]["type"] == "json_schema"
    [(_, calls)] = runs_and_calls(chaos_toml)
    [call] = [c for c in calls if c.operation == "chat"]  # besides kind inference's embedding call
    assert call.tier == "nano" and "pinned" in call.reason


async def test_kind_from_the_agents_model_settings(
    session: Session, chaos_server: ChaosServer, chaos_toml: Path
) -> None:
    agent = Agent(
        name="triage",
        instructions="Classify the ticket.",
        model_settings=ModelSettings(metadata={"tierwise_kind": "classify"}),
    )
    await Runner.run(agent, "Refund please", run_config=RunConfig(model_provider=tw_agents.provider(session)))
    [(_, [call])] = runs_and_calls(chaos_toml)
    assert (call.tier, call.task_kind) == ("nano", "classify")


async def stream_text(agent: Agent[Any], text: str, session: Session) -> tuple[Any, list[str]]:
    result = Runner.run_streamed(
        agent, text, run_config=RunConfig(model_provider=tw_agents.provider(session))
    )
    deltas = [
        e.data.delta
        async for e in result.stream_events()
        if e.type == "raw_response_event" and isinstance(e.data, ResponseTextDeltaEvent)
    ]
    return result, deltas


async def test_streaming_yields_text_deltas_as_they_come(
    session: Session, chaos_server: ChaosServer, chaos_toml: Path
) -> None:
    chaos_server.set_script(
        {"rules": [{"reply": {"text": "Forty two, as always.", "usage": {"prompt_tokens": 40}}}]}
    )
    agent = Agent(
        name="oracle",
        instructions="Answer.",
        model_settings=ModelSettings(metadata={"tierwise_kind": "synthesis"}),
    )
    result, deltas = await stream_text(agent, "Meaning of life?", session)
    assert result.final_output == "Forty two, as always."
    assert len(deltas) > 1 and "".join(deltas) == "Forty two, as always."
    [(run, [call])] = runs_and_calls(chaos_toml)
    assert run.status == "ok" and (call.operation, call.tier, call.status) == ("stream", "mini", "ok")
    usage = result.context_wrapper.usage
    assert (usage.input_tokens, usage.output_tokens) == (40, call.output_tokens) and usage.requests == 1


async def test_streaming_a_tool_using_agent_round_trips_its_tool(
    session: Session, chaos_server: ChaosServer, chaos_toml: Path
) -> None:
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"system_contains": "calculator"}, "times": 1,
                 "reply": {"tool_calls": [{"name": "add", "arguments": {"a": 20, "b": 22}}]}},
                {"reply": "The answer is forty two."},
            ]
        }
    )  # fmt: skip
    result, deltas = await stream_text(calculator(), "20 + 22?", session)
    # A turn that offers tools arrives whole (tierwise's stream carries text only), as one delta.
    assert result.final_output == "The answer is forty two." == "".join(deltas)
    [(run, calls)] = runs_and_calls(chaos_toml)
    assert run.status == "ok"
    assert [(c.operation, c.tier, c.status) for c in calls] == [("stream", "mini", "ok")] * 2
    bodies = chat_bodies(chaos_server)
    assert any(m["role"] == "tool" and m["content"] == "42" for m in bodies[1]["messages"])
    assert result.context_wrapper.usage.input_tokens == sum(c.input_tokens for c in calls)


async def test_an_unknown_model_name_is_one_line_naming_tierwise_models(
    session: Session, chaos_server: ChaosServer
) -> None:
    agent = Agent(name="x", instructions="Hi.", model="gpt-4o-nonexistent")
    with pytest.raises(InputError) as err:
        await Runner.run(agent, "hello", run_config=RunConfig(model_provider=tw_agents.provider(session)))
    msg = str(err.value)
    assert "gpt-4o-nonexistent" in msg and "tierwise models" in msg and "\n" not in msg
    with pytest.raises(InputError, match="tierwise/large"):
        tw_agents.provider(session).get_model("tierwise/huge")
    assert chat_bodies(chaos_server) == []


def test_a_framework_version_outside_the_range_is_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        require("openai-agents", at_least="1.0", below="2.0", extra="agents")
    msg = str(err.value)
    assert "outside the supported range >=1.0,<2.0" in msg and "tierwise[agents]" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"not installed: pip install 'tierwise\[agents\]'"):
        require("no-such-framework-xyz", at_least="1", below="2", extra="agents")
