"""POST /v1/responses with the openai SDK's ``responses.create`` / ``responses.stream`` against the proxy."""

from __future__ import annotations

import openai
import pytest

from tests.server.conftest import Served, async_client
from tierwise.testing import ChaosServer


def test_create_with_instructions_and_usage(client: openai.OpenAI, proxy: Served) -> None:
    raw = client.responses.with_raw_response.create(
        model="tierwise/nano", instructions="Answer briefly.", input="hello responses"
    )
    resp = raw.parse()
    assert resp.output_text == "echo: hello responses"
    assert resp.status == "completed" and resp.model == "chaos/nano"
    assert raw.headers["x-tierwise-model"] == "chaos/nano" and raw.headers["x-tierwise-tier"] == "nano"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    [row] = proxy.calls("chat")
    assert row.cost_usd == pytest.approx(float(raw.headers["x-tierwise-cost-usd"]), rel=1e-6)


def test_stream_events_and_final_response(client: openai.OpenAI, proxy: Served) -> None:
    with client.responses.stream(model="tierwise/mini", input="stream this please") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == "echo: stream this please"
    assert final.usage is not None and final.usage.output_tokens > 0
    [row] = proxy.calls("stream")
    assert row.status == "ok" and row.model == "chaos/mini"


def test_function_call_round_trip(client: openai.OpenAI, chaos_server: ChaosServer) -> None:
    call = {"name": "get_time", "arguments": {"tz": "UTC"}, "id": "call_t"}
    chaos_server.set_script(
        {"rules": [{"match": {"user_contains": "time"}, "times": 1, "reply": {"tool_calls": [call]}}]}
    )
    tools = [{"type": "function", "name": "get_time", "description": "Current time",
              "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}]  # fmt: skip
    first = client.responses.create(model="tierwise/mini", input="What time is it?", tools=tools)  # type: ignore[arg-type]
    [item] = [o for o in first.output if o.type == "function_call"]
    assert item.name == "get_time" and item.call_id == "call_t" and item.arguments == '{"tz": "UTC"}'
    second = client.responses.create(
        model="tierwise/mini",
        tools=tools,  # type: ignore[arg-type]
        input=[
            {"role": "user", "content": "What time is it?"},
            {"type": "function_call", "call_id": "call_t", "name": "get_time", "arguments": '{"tz": "UTC"}'},
            {"type": "function_call_output", "call_id": "call_t", "output": "12:00"},
        ],
    )
    assert second.output_text == "echo: What time is it?"
    sent = chaos_server.requests("/v1/chat/completions")[-1]["body"]["messages"]
    assert sent[-1] == {"role": "tool", "content": "12:00", "tool_call_id": "call_t"}
    assert sent[-2]["tool_calls"][0]["id"] == "call_t"


def test_text_format_json_schema(client: openai.OpenAI, chaos_server: ChaosServer) -> None:
    reply = {"json": {"answer": 4}}
    chaos_server.set_script({"rules": [{"match": {"has_response_format": True}, "reply": reply}]})
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    resp = client.responses.create(
        model="tierwise/auto",
        input="What is 2+2? Answer as JSON",
        text={"format": {"type": "json_schema", "name": "sum", "schema": schema}},
    )
    assert resp.output_text == '{"answer":4}'


def test_stateless_options_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        client.responses.create(model="tierwise/auto", input="hi", previous_response_id="resp_1")
    with pytest.raises(openai.BadRequestError, match="store"):
        client.responses.create(model="tierwise/auto", input="hi", store=True)


async def test_async_responses(proxy: Served) -> None:
    async with async_client(proxy) as aclient:
        resp = await aclient.responses.create(model="tierwise/nano", input="async hello")
        assert resp.output_text == "echo: async hello"
        stream = await aclient.responses.create(model="tierwise/nano", input="async stream", stream=True)
        kinds = [e.type async for e in stream]
        assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
