"""POST /v1/chat/completions with the official openai SDK (sync and async) against the proxy on loopback,
the proxy's providers on the chaos server."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.server.conftest import Served, async_client
from tierwise.testing import ChaosServer

MINI_IN, MINI_CACHED, MINI_OUT = 0.75, 0.075, 4.50  # chaos/mini's prices per 1M tokens (tests/conftest.py)


def _cost(prompt: int, cached: int, completion: int) -> float:
    return ((prompt - cached) * MINI_IN + cached * MINI_CACHED + completion * MINI_OUT) / 1e6


def test_plain_answer_names_the_served_model_and_is_recorded(client: openai.OpenAI, proxy: Served) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="tierwise/auto",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Classify: refund"},
        ],
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "echo: Classify: refund"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model in {"chaos/large", "chaos/mini", "chaos/nano"}
    assert raw.headers["x-tierwise-model"] == answer.model
    assert raw.headers["x-tierwise-tier"] == answer.model.split("/")[1]
    assert raw.headers["x-tierwise-reason"]
    assert answer.usage is not None and answer.usage.total_tokens == (
        answer.usage.prompt_tokens + answer.usage.completion_tokens
    )
    [row] = proxy.calls("chat")
    assert row.status == "ok" and row.model == answer.model
    assert row.cost_usd == pytest.approx(float(raw.headers["x-tierwise-cost-usd"]), rel=1e-6)
    assert row.input_tokens == answer.usage.prompt_tokens


def test_kind_and_stakes_from_metadata_and_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="tierwise/auto",
        messages=[{"role": "user", "content": "Plan the migration of our billing system"}],
        extra_headers={"x-tierwise-kind": "plan"},
    )
    assert raw.headers["x-tierwise-tier"] == "large"
    assert raw.headers["x-tierwise-kind"] == "plan"
    raw = client.chat.completions.with_raw_response.create(
        model="tierwise/auto",
        messages=[{"role": "user", "content": "Is this spam: WIN A PRIZE"}],
        metadata={"tierwise_kind": "classify"},
    )
    assert raw.headers["x-tierwise-tier"] == "nano"
    pinned = client.chat.completions.with_raw_response.create(
        model="tierwise/mini", messages=[{"role": "user", "content": "Plan a party"}]
    )
    assert pinned.headers["x-tierwise-tier"] == "mini" and pinned.parse().model == "chaos/mini"
    by_id = client.chat.completions.create(model="chaos/large", messages=[{"role": "user", "content": "hi"}])
    assert by_id.model == "chaos/large"


def test_stream_carries_usage_without_asking_and_costs_the_same_as_unstreamed(
    client: openai.OpenAI, proxy: Served, chaos_server: ChaosServer
) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 40, "cached_tokens": 600}
    chaos_server.set_script({"rules": [{"reply": {"text": "one two three four", "usage": usage}}]})
    messages = [{"role": "user", "content": "Tell me a short story about a cat"}]
    plain = client.chat.completions.create(model="tierwise/mini", messages=messages)
    raw = client.chat.completions.with_raw_response.create(
        model="tierwise/mini", messages=messages, stream=True
    )
    assert raw.headers["x-tierwise-tier"] == "mini" and raw.headers["x-tierwise-model"] == "chaos/mini"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content == "one two three four"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None  # the client did not ask for include_usage
    assert last.usage.prompt_tokens == 1000 and last.usage.completion_tokens == 40
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 600
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    tierwise = (last.model_extra or {})["tierwise"]
    assert tierwise["tier"] == "mini" and tierwise["cost_usd"] == pytest.approx(_cost(1000, 600, 40))
    [chat] = proxy.calls("chat")
    [stream] = proxy.calls("stream")
    assert stream.cached_input_tokens == chat.cached_input_tokens == 600
    assert stream.cost_usd == pytest.approx(chat.cost_usd) == pytest.approx(_cost(1000, 600, 40))
    assert not stream.metadata.get("usage_estimated")


def test_tool_call_round_trip(client: openai.OpenAI, chaos_server: ChaosServer) -> None:
    call = {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}
    chaos_server.set_script(
        {"rules": [{"match": {"has_tools": True, "user_contains": "weather"}, "times": 1,
                    "reply": {"tool_calls": [call]}}]}
    )  # fmt: skip
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip
    messages: list[dict[str, object]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model="tierwise/mini", messages=messages, tools=tools)  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [tc] = choice.message.tool_calls
    assert tc.function.name == "get_weather" and tc.function.arguments == '{"city": "Paris"}'  # type: ignore[union-attr]
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tc.id, "content": "18 C and sunny"},
    ]
    second = client.chat.completions.create(model="tierwise/mini", messages=messages, tools=tools)  # type: ignore[arg-type]
    assert second.choices[0].finish_reason == "stop"
    sent = chaos_server.requests("/v1/chat/completions")[-1]["body"]
    assert sent["messages"][-1] == {"role": "tool", "content": "18 C and sunny", "tool_call_id": "call_1"}
    assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_tool_call_streamed(client: openai.OpenAI, chaos_server: ChaosServer) -> None:
    call = {"name": "lookup", "arguments": {"q": "x"}, "id": "call_9"}
    chaos_server.set_script({"rules": [{"match": {"has_tools": True}, "reply": {"tool_calls": [call]}}]})
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    chunks = list(
        client.chat.completions.create(
            model="tierwise/mini",
            messages=[{"role": "user", "content": "look it up"}],
            tools=tools,
            stream=True,  # type: ignore[arg-type]
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.id, tc.function.name) for tc in calls] == [("call_9", "lookup")]  # type: ignore[union-attr]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


class Ticket(BaseModel):
    category: str
    urgent: bool


def test_structured_output_parses(client: openai.OpenAI, chaos_server: ChaosServer) -> None:
    reply = {"json": {"category": "billing", "urgent": True}}
    chaos_server.set_script({"rules": [{"match": {"has_response_format": True}, "reply": reply}]})
    parsed = client.chat.completions.parse(
        model="tierwise/auto",
        messages=[{"role": "user", "content": "Extract the ticket: my invoice is wrong, urgent"}],
        response_format=Ticket,
    )
    assert parsed.choices[0].message.parsed == Ticket(category="billing", urgent=True)
    sent = chaos_server.requests("/v1/chat/completions")[-1]["body"]
    assert sent["response_format"]["type"] == "json_schema"
    obj = client.chat.completions.create(
        model="tierwise/nano",
        messages=[{"role": "user", "content": "Return a JSON object"}],
        response_format={"type": "json_object"},
    )
    assert obj.choices[0].message.content is not None and obj.choices[0].message.content.startswith("{")


async def test_async_client_plain_and_streamed(proxy: Served) -> None:
    async with async_client(proxy) as aclient:
        await _plain_and_streamed(aclient)


async def _plain_and_streamed(aclient: openai.AsyncOpenAI) -> None:
    answer = await aclient.chat.completions.create(
        model="tierwise/nano", messages=[{"role": "user", "content": "hello async"}], max_tokens=50
    )
    assert answer.choices[0].message.content == "echo: hello async"
    stream = await aclient.chat.completions.create(
        model="tierwise/nano",
        messages=[{"role": "user", "content": "hello stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello stream"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_client_gone_mid_stream_cancels_upstream_and_charges_what_was_used(
    proxy: Served, chaos_server: ChaosServer, client: openai.OpenAI
) -> None:
    long_text = " ".join(f"word{i}" for i in range(200))
    chaos_server.set_script({"per_token_latency_s": 0.02, "rules": [{"reply": {"text": long_text}}]})
    body = {"model": "tierwise/mini", "stream": True,
            "messages": [{"role": "user", "content": "Write a long essay"}]}  # fmt: skip
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", proxy.base_url + "/chat/completions", json=body) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        seen = [line for line, _ in zip(lines, range(6), strict=False) if line.startswith("data:")]
        assert len(seen) >= 2  # the role chunk and a first word
    deadline = time.monotonic() + 10
    rows = []
    while time.monotonic() < deadline:
        rows = proxy.calls("stream")
        if rows:
            break
        time.sleep(0.05)
    [row] = rows
    worst = (row.input_tokens * MINI_IN + 500 * MINI_OUT) / 1e6  # chaos/mini reserves 500 output tokens
    assert row.status != "ok" and row.metadata.get("usage_estimated") is True
    assert 0 < row.output_tokens < 100  # only the words generated before the client left
    assert row.cost_usd is not None and row.cost_usd < worst / 2
    # The upstream stream was closed too: the chaos server did not pace out all 200 words.
    assert time.monotonic() < deadline
    chaos_server.set_script({})
    after = client.chat.completions.create(
        model="tierwise/nano", messages=[{"role": "user", "content": "still up?"}]
    )
    assert after.choices[0].message.content == "echo: still up?"
