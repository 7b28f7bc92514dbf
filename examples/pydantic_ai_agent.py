"""A pydantic-ai agent on tierwise: a tool, structured output, a budget, every call in the ledger.

    pip install 'tierwise[pydantic-ai]'
    python examples/pydantic_ai_agent.py "My order 1042 arrived broken, I want a refund"

The agent looks the order up with a tool and answers with a validated `Triage` object. tierwise routes
each request (tool-using turns land on mini), caps the run at $0.05 and records every call. With no
tierwise.toml and no key this runs on the embedded default models.
"""

from __future__ import annotations

import asyncio
import sys

from pydantic import BaseModel
from pydantic_ai import Agent

import tierwise
from tierwise.integrations.pydantic_ai import TierwiseModel


class Triage(BaseModel):
    intent: str
    order_id: str
    urgent: bool


ORDERS = {"1042": "shipped 3 days ago, 2 items, $84.00"}


async def main(ticket: str) -> None:
    async with tierwise.Session() as session:
        agent = Agent(
            TierwiseModel(session, budget_usd=0.05),
            output_type=Triage,
            instructions="You triage support tickets. Look the order up before answering.",
        )

        @agent.tool_plain
        def lookup_order(order_id: str) -> str:
            """The status of an order, by its id."""
            return ORDERS.get(order_id, "no such order")

        result = await agent.run(ticket)
        assert session.ledger is not None
        run = next(r for r in session.ledger.runs() if r.kind == "pydantic-ai")
        calls = [c for c in session.ledger.calls(run_id=run.id) if c.operation != "embed"]
    print(result.output.model_dump_json())
    print(f"run {run.id} {run.status}")
    for c in calls:
        print(f"  {c.tier:<5} {c.model:<24} {c.task_kind:<8} {c.reason}")
    usage = result.usage if hasattr(result.usage, "input_tokens") else result.usage()
    print(f"{usage.requests} model calls, {usage.input_tokens} input / {usage.output_tokens} output tokens")


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "My order 1042 arrived broken, I want a refund"))
