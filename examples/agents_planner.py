"""A planner agent that hands work to executor agents, all on tierwise (OpenAI Agents SDK).

    pip install 'tierwise[agents]'
    python examples/agents_planner.py "What is 17.5 + 24.5?"

The planner can hand off, so the router puts it on the large tier; the executors work with function
tools, so they land on mini. One tierwise run per Runner.run: one budget shared by every agent, one
ledger tree (`tierwise runs`, `tierwise spend`). With no tierwise.toml and no key this runs on the
embedded default models.
"""

from __future__ import annotations

import asyncio
import sys

from agents import Agent, RunConfig, Runner, function_tool, set_tracing_disabled

import tierwise
from tierwise.integrations.agents import provider


@function_tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@function_tool
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


async def main(question: str) -> None:
    set_tracing_disabled(True)  # the trace is in tierwise's ledger; nothing is exported to OpenAI
    calculator = Agent(name="calculator", instructions="You are the calculator. Use add.", tools=[add])
    counter = Agent(name="counter", instructions="You are the counter. Use word_count.", tools=[word_count])
    planner = Agent(
        name="planner",
        instructions="You are the planner. Hand arithmetic to the calculator and counting to the counter.",
        handoffs=[calculator, counter],
        model="tierwise/auto",
    )
    async with tierwise.Session() as session:
        config = RunConfig(model_provider=provider(session, budget_usd=0.05))
        result = await Runner.run(planner, question, run_config=config)
        assert session.ledger is not None
        run = next(r for r in session.ledger.runs() if r.kind == "agents")
        calls = [c for c in session.ledger.calls(run_id=run.id) if c.operation != "embed"]
    print(result.final_output)
    print(f"answered by {result.last_agent.name}; run {run.id} {run.status}")
    for c in calls:
        print(f"  {c.tier:<5} {c.model:<24} {c.task_kind:<8} {c.reason}")
    usage = result.context_wrapper.usage
    print(f"{usage.requests} model calls, {usage.input_tokens} input / {usage.output_tokens} output tokens")


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "What is 17.5 + 24.5?"))
