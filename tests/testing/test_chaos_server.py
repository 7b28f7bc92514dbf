"""The chaos server, exercised the way users meet it: the official openai SDK over real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import openai
import pydantic
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from tierwise.testing import ChaosServer, Fault, FaultSchedule, Match, Reply, Rule, Script, minimal_instance

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello chaos"}]


@pytest.fixture(scope="module")
def server() -> Iterator[ChaosServer]:
    with ChaosServer() as chaos:
        yield chaos


@pytest.fixture(autouse=True)
def _fresh(server: ChaosServer) -> None:
    server.reset()


def sdk(server: ChaosServer, **options: Any) -> AsyncOpenAI:
    """A client per test, opened inside the test's own event loop (so no fixture/test loop mismatch)."""
    return AsyncOpenAI(base_url=server.base_url, api_key="test", **{"max_retries": 0, **options})


# --- scripted replies -------------------------------------------------------------------------------


async def test_scripted_text_reply_with_served_model_and_usage(server: ChaosServer) -> None:
    async with sdk(server) as client:
        usage = {"prompt_tokens": 1000, "cached_tokens": 600, "reasoning_tokens": 42}
        rule = {
            "match": {"model": "gpt-5.4", "user_regex": "^hello"},
            "reply": {"text": "hi!", "usage": usage},
        }
        server.set_script({"rules": [rule], "served_model": "gpt-5.4-2026-03-05"})

        out = await client.chat.completions.create(model="gpt-5.4", messages=USER)

        assert out.choices[0].message.content == "hi!"
        assert out.model == "gpt-5.4-2026-03-05"
        assert out.usage is not None
        assert out.usage.prompt_tokens == 1000
        assert out.usage.prompt_tokens_details is not None
        assert out.usage.prompt_tokens_details.cached_tokens == 600
        assert out.usage.completion_tokens_details is not None
        assert out.usage.completion_tokens_details.reasoning_tokens == 42
        assert out.usage.completion_tokens == len("hi!") // 4 + 1
        # Another model does not match the rule: deterministic echo of the last user message.
        other = await client.chat.completions.create(model="gpt-5.4-mini", messages=USER)
        assert other.choices[0].message.content == "echo: hello chaos"
        assert other.model == "gpt-5.4-2026-03-05"


async def test_rules_match_system_message_response_format_and_tools(server: ChaosServer) -> None:
    async with sdk(server) as client:
        server.set_script(
            Script(
                rules=[
                    Rule(
                        match=Match(system_contains="planner", has_response_format=True),
                        reply=Reply(data={"a": 1}),
                    ),
                    Rule(match=Match(has_tools=True), reply=Reply(text="tools seen")),
                    Rule(match=Match(system_regex="judge|grader"), reply=Reply(text="graded")),
                ]
            )
        )
        sys_msg: ChatCompletionMessageParam = {"role": "system", "content": "You are the planner."}
        fmt: Any = {"type": "json_object"}
        planned = await client.chat.completions.create(
            model="m", messages=[sys_msg, *USER], response_format=fmt
        )
        assert json.loads(planned.choices[0].message.content or "") == {"a": 1}

        tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        with_tools = await client.chat.completions.create(model="m", messages=USER, tools=[tool])  # type: ignore[list-item]
        assert with_tools.choices[0].message.content == "tools seen"

        parts: Any = [{"role": "developer", "content": [{"type": "text", "text": "act as a grader"}]}, *USER]
        graded = await client.chat.completions.create(model="m", messages=parts)
        assert graded.choices[0].message.content == "graded"


async def test_times_makes_a_rule_single_use(server: ChaosServer) -> None:
    async with sdk(server) as client:
        # The classic repair scenario: first a malformed plan, then a valid one, then the default.
        server.set_script(
            {
                "rules": [
                    {"match": {"user_contains": "plan"}, "reply": {"text": "{not a plan"}, "times": 1},
                    {"match": {"user_contains": "plan"}, "reply": {"json": {"steps": []}}, "times": 2},
                ]
            }
        )
        msgs: Any = [{"role": "user", "content": "make a plan"}]
        contents = [
            (await client.chat.completions.create(model="m", messages=msgs)).choices[0].message.content
            for _ in range(4)
        ]
        assert contents == ["{not a plan", '{"steps": []}', '{"steps": []}', "echo: make a plan"]
        assert [e["rule"] for e in server.requests()] == [0, 1, 1, None]


async def test_scripted_tool_call_reply(server: ChaosServer) -> None:
    async with sdk(server) as client:
        call = {"name": "read_file", "arguments": {"path": "src/app.py"}}
        server.set_script({"rules": [{"reply": {"tool_calls": [call]}}]})

        out = await client.chat.completions.create(model="m", messages=USER)

        choice = out.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        assert choice.message.tool_calls is not None
        fn = choice.message.tool_calls[0].function  # type: ignore[union-attr]
        assert fn.name == "read_file"
        assert json.loads(fn.arguments) == {"path": "src/app.py"}


async def test_forced_tool_choice_gets_a_default_call_with_valid_arguments(server: ChaosServer) -> None:
    async with sdk(server) as client:
        params = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}, "required": ["n"]}
        tool: Any = {"type": "function", "function": {"name": "count", "parameters": params}}

        out = await client.chat.completions.create(
            model="m", messages=USER, tools=[tool], tool_choice="required"
        )

        call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "count"  # type: ignore[union-attr]
        assert json.loads(call.function.arguments) == {"n": 3}  # type: ignore[union-attr]


# --- default structured output ----------------------------------------------------------------------


class Step(pydantic.BaseModel):
    id: str = pydantic.Field(min_length=2)
    kind: Literal["plan", "code_edit", "review_file"]
    depends_on: list[str]
    priority: int = pydantic.Field(ge=1, le=5)
    weight: float = pydantic.Field(gt=0)


class Plan(pydantic.BaseModel):
    goal: str
    steps: list[Step] = pydantic.Field(min_length=2)
    note: str | None
    version: Literal[2]


async def test_default_reply_is_a_valid_instance_of_the_json_schema(server: ChaosServer) -> None:
    async with sdk(server) as client:
        # `parse` sends {"type": "json_schema", "json_schema": {"schema": ..., "strict": true}} and validates.
        out = await client.chat.completions.parse(model="m", messages=USER, response_format=Plan)
        plan = out.choices[0].message.parsed
        assert isinstance(plan, Plan)
        assert len(plan.steps) == 2 and plan.steps[0].priority == 1 and plan.version == 2


async def test_llama_cpp_style_json_object_with_schema(server: ChaosServer) -> None:
    async with sdk(server) as client:
        fmt: Any = {"type": "json_object", "schema": Plan.model_json_schema()}
        out = await client.chat.completions.create(model="m", messages=USER, response_format=fmt)
        Plan.model_validate_json(out.choices[0].message.content or "")


def test_minimal_instance_covers_schema_keywords() -> None:
    schema = {
        "type": "object",
        "required": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "properties": {
            "a": {"type": "integer", "exclusiveMinimum": 10},
            "b": {"type": "number", "maximum": -2.5},
            "c": {"const": "fixed"},
            "d": {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
            "e": {"allOf": [{"$ref": "#/$defs/Point"}]},
            "f": {"type": "array", "minItems": 3, "uniqueItems": True, "items": {"type": "integer"}},
            "g": {"type": ["null", "string"], "format": "date-time"},
            "h": {"type": "string", "minLength": 3, "maxLength": 5},
        },
        "$defs": {"Point": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}}},
    }
    assert minimal_instance(schema) == {
        "a": 11,
        "b": -2.5,
        "c": "fixed",
        "d": False,
        "e": {"x": 0},
        "f": [0, 1, 2],
        "g": "1970-01-01T00:00:00Z",
        "h": "xxx",
    }


# --- faults -------------------------------------------------------------------------------------------


async def test_rate_limit_raises_rate_limit_error_with_retry_after(server: ChaosServer) -> None:
    async with sdk(server) as client:
        server.set_script({"faults": [{"fault": {"kind": "rate_limit", "retry_after_s": 2.5}, "first": 1}]})

        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="m", messages=USER)

        assert caught.value.status_code == 429
        assert caught.value.response.headers["retry-after"] == "2.5"
        assert caught.value.code == "rate_limit_exceeded"
        # `first: 1` is spent: the next request succeeds.
        assert (await client.chat.completions.create(model="m", messages=USER)).choices


async def test_sdk_retries_through_scheduled_429s(server: ChaosServer) -> None:
    server.set_script({"faults": [{"fault": {"kind": "rate_limit", "retry_after_s": 0.05}, "first": 2}]})
    async with sdk(server, max_retries=2) as retrying:
        out = await retrying.chat.completions.create(model="m", messages=USER)
    assert out.choices[0].message.content == "echo: hello chaos"
    assert [e["fault"] for e in server.requests()] == ["rate_limit", "rate_limit", None]


@pytest.mark.parametrize("kind,status", [("http_500", 500), ("http_502", 502), ("http_503", 503)])
async def test_server_errors_raise_internal_server_error(server: ChaosServer, kind: str, status: int) -> None:
    async with sdk(server) as client:
        server.set_script({"rules": [{"fault": kind}]})
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="m", messages=USER)
        assert caught.value.status_code == status
        assert caught.value.body is not None and "message" in caught.value.body  # type: ignore[operator]


async def test_hang_times_out_on_the_client_and_frees_the_server(server: ChaosServer) -> None:
    server.set_script({"rules": [{"fault": "hang", "times": 1}]})
    async with sdk(server, timeout=0.3) as short:
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            await short.chat.completions.create(model="m", messages=USER)
        assert time.perf_counter() - started < 2.0
        assert (await short.chat.completions.create(model="m", messages=USER)).choices


async def test_connection_drop_raises_connection_error(server: ChaosServer) -> None:
    async with sdk(server) as client:
        server.set_script({"rules": [{"fault": "drop", "times": 1}]})
        with pytest.raises(openai.APIConnectionError) as caught:
            await client.chat.completions.create(model="m", messages=USER)
        assert not isinstance(caught.value, openai.APITimeoutError)
        assert (await client.chat.completions.create(model="m", messages=USER)).choices


async def test_malformed_bodies_as_the_sdk_really_sees_them(server: ChaosServer) -> None:
    async with sdk(server) as client:
        server.set_script(
            {"rules": [{"fault": "malformed_json", "times": 1}, {"fault": "missing_choices", "times": 1}]}
        )
        # Invalid JSON with status 200: the SDK does not wrap it, the json decoder's error escapes.
        with pytest.raises(json.JSONDecodeError):
            await client.chat.completions.create(model="m", messages=USER)
        # Valid JSON without `choices`: the SDK (non-strict) returns an object whose choices are None.
        out = await client.chat.completions.create(model="m", messages=USER)
        assert out.choices is None
        assert out.usage is not None


async def test_invalid_structured_output_faults(server: ChaosServer) -> None:
    async with sdk(server) as client:
        server.set_script(
            {"rules": [{"fault": "invalid_output", "times": 1}, {"fault": "schema_mismatch", "times": 1}]}
        )
        for _ in range(2):
            with pytest.raises(pydantic.ValidationError):
                await client.chat.completions.parse(model="m", messages=USER, response_format=Plan)
        assert (await client.chat.completions.parse(model="m", messages=USER, response_format=Plan)).choices


async def test_every_nth_and_seeded_probability_schedules(server: ChaosServer) -> None:
    async with sdk(server) as client:

        async def outcomes(n: int) -> list[str]:
            seen = []
            for _ in range(n):
                try:
                    await client.chat.completions.create(model="m", messages=USER)
                    seen.append("ok")
                except openai.InternalServerError:
                    seen.append("500")
            return seen

        server.set_script(Script(faults=[FaultSchedule(fault=Fault(kind="http_503"), every=3)]))
        assert await outcomes(6) == ["ok", "ok", "500", "ok", "ok", "500"]

        flaky = Script(seed=7, faults=[FaultSchedule(fault=Fault(kind="http_500"), probability=0.5)])
        server.set_script(flaky)
        first = await outcomes(20)
        server.set_script(flaky)  # counters and RNG restart: the same seed gives the same failures
        assert await outcomes(20) == first
        assert 3 <= first.count("500") <= 17


async def test_latency_is_concurrent_not_serial(server: ChaosServer) -> None:
    async with sdk(server) as client:
        sem = asyncio.Semaphore(50)

        async def one() -> None:
            async with sem:
                await client.chat.completions.create(model="m", messages=USER)

        # Open the 50 pooled connections first: the check is about latency overlapping, not TCP setup.
        await asyncio.gather(*(one() for _ in range(50)))
        server.set_script({"latency_s": 0.2})
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(100)))
        elapsed = time.perf_counter() - started
        # Serial handling would take 100 × 0.2 = 20 s; overlapping takes ~0.4 s. The bound leaves room for
        # a loaded 2-core machine (speed itself is measured in bench/, not here).
        assert 0.4 <= elapsed < 5.0


async def test_rule_latency_and_per_token_latency(server: ChaosServer) -> None:
    async with sdk(server) as client:
        server.set_script(
            {"per_token_latency_s": 0.01, "rules": [{"reply": {"text": "x" * 79}, "latency_s": 0.1}]}
        )  # 79 chars -> 20 completion tokens -> 0.2 s, plus 0.1 s fixed
        started = time.perf_counter()
        await client.chat.completions.create(model="m", messages=USER)
        assert time.perf_counter() - started >= 0.3


# --- streaming, embeddings, models, auth ---------------------------------------------------------------


async def test_streaming_yields_chunks_and_final_usage(server: ChaosServer) -> None:
    async with sdk(server) as client:
        text = "The quick brown fox jumps over the lazy dog."
        server.set_script({"rules": [{"reply": text}]})

        stream = await client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]

        pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        assert "".join(pieces) == text
        assert len(pieces) > 5
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None
        assert last.usage.completion_tokens == len(text) // 4 + 1


async def test_streaming_tool_call_arguments_reassemble(server: ChaosServer) -> None:
    async with sdk(server) as client:
        args = {"query": "a fairly long search query with several words in it", "k": 5}
        server.set_script({"rules": [{"reply": {"tool_calls": [{"name": "search", "arguments": args}]}}]})
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        name, parts = "", []
        async for chunk in stream:
            for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                name += (call.function.name or "") if call.function else ""
                parts.append((call.function.arguments or "") if call.function else "")
        assert name == "search"
        assert json.loads("".join(parts)) == args


async def test_embeddings_are_deterministic_unit_vectors(server: ChaosServer) -> None:
    async with sdk(server) as client:
        first = await client.embeddings.create(model="e", input=["alpha", "beta"])
        again = await client.embeddings.create(model="e", input="alpha", encoding_format="float")
        wide = await client.embeddings.create(model="e", input="alpha", dimensions=256)

        a, b = first.data[0].embedding, first.data[1].embedding
        assert len(a) == 64 and len(wide.data[0].embedding) == 256
        assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-5)
        assert a != b
        assert again.data[0].embedding == pytest.approx(a, abs=1e-6)  # base64 float32 vs JSON floats
        assert first.usage.prompt_tokens == (5 // 4 + 1) + (4 // 4 + 1)


async def test_embeddings_base64_wire_format(server: ChaosServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as raw:
        got = (await raw.post("/embeddings", json={"input": "x", "encoding_format": "base64"})).json()
    vector = struct.unpack("<64f", base64.b64decode(got["data"][0]["embedding"]))
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-5)


async def test_models_endpoint_lists_scripted_models(server: ChaosServer) -> None:
    async with sdk(server) as client:
        server.set_script(
            {"models": ["gpt-5.4"], "rules": [{"match": {"model": "gpt-5.4-nano"}, "reply": "x"}]}
        )
        ids = [m.id async for m in client.models.list()]
        assert ids == ["gpt-5.4", "gpt-5.4-nano"]


def test_request_log_records_what_was_sent_without_secrets(server: ChaosServer) -> None:
    async def send() -> None:
        async with AsyncOpenAI(base_url=server.base_url, api_key="sk-secret", max_retries=0) as sdk:
            await sdk.chat.completions.create(model="gpt-5.4-nano", messages=USER, temperature=0)
            await sdk.embeddings.create(model="emb", input="hi")

    before = time.time()
    asyncio.run(send())
    chat, emb = server.requests()
    assert chat["path"] == "/v1/chat/completions" and chat["model"] == "gpt-5.4-nano"
    assert chat["body"]["messages"] == USER and chat["body"]["temperature"] == 0
    assert "authorization" not in {k.lower() for k in chat["headers"]}
    assert "sk-secret" not in json.dumps(chat)
    assert before <= chat["timestamp"] <= emb["timestamp"] <= time.time()
    assert server.requests("/v1/embeddings") == [emb]
    server.reset()
    assert server.requests() == []


def test_bad_script_is_rejected_with_the_reason(server: ChaosServer) -> None:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        server._control().post(
            "/_chaos/script", json={"rules": [{"match": {"user_regex": "("}}]}
        ).raise_for_status()
    assert "user_regex" in caught.value.response.json()["error"]["message"]
    with pytest.raises(pydantic.ValidationError, match="exactly one of"):
        FaultSchedule(fault=Fault(kind="drop"), first=1, every=2)
    with pytest.raises(pydantic.ValidationError):
        Script.model_validate({"rule": []})  # typo: unknown keys are errors, not silently ignored


async def test_require_key_answers_401_in_openai_shape() -> None:
    with ChaosServer(require_key="sk-right") as keyed:
        async with AsyncOpenAI(base_url=keyed.base_url, api_key="sk-wrong", max_retries=0) as wrong:
            with pytest.raises(openai.AuthenticationError) as caught:
                await wrong.chat.completions.create(model="m", messages=USER)
        assert caught.value.code == "invalid_api_key"
        async with AsyncOpenAI(base_url=keyed.base_url, api_key="sk-right", max_retries=0) as right:
            assert (await right.chat.completions.create(model="m", messages=USER)).choices


def test_subprocess_server_serves_and_stops_cleanly() -> None:
    script = Script(rules=[Rule(reply=Reply(text="from a subprocess"))])
    with ChaosServer(script, in_process=False, latency_s=0.05) as chaos:
        proc = chaos._proc
        assert proc is not None
        sdk = openai.OpenAI(base_url=chaos.base_url, api_key="test", max_retries=0)
        out = sdk.chat.completions.create(model="m", messages=USER)
        assert out.choices[0].message.content == "from a subprocess"
        chaos.set_script({"rules": [{"reply": "replaced"}]})
        assert sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content == "replaced"
        chaos.reset()  # back to the script given at start
        assert sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content == (
            "from a subprocess"
        )
        sdk.close()
    assert proc.poll() is not None


def test_module_entry_point_prints_its_url_and_exits_on_sigterm() -> None:
    cmd = [sys.executable, "-m", "tierwise.testing", "--port", "0", "--latency", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("tierwise chaos-server listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert httpx.get(f"{url}/models").json()["object"] == "list"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
