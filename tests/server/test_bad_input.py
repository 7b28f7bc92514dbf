"""Bad input with raw httpx: the right status and one OpenAI-style error line, and the server answers the
next request after each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import chaos_config
from tests.server.conftest import Served, serve
from tierwise.testing import ChaosServer

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture()
def http(shared_proxy: Served, chaos_server: ChaosServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_proxy.base_url, timeout=15) as c:
        yield c


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "\n" not in err["message"] and "Traceback" not in err["message"]
    return err


def _still_up(http: httpx.Client) -> None:
    # The kind is given: this checks the server, not kind inference.
    body = {"model": "tierwise/nano", "messages": MSG, "metadata": {"tierwise_kind": "classify"}}
    r = http.post("/chat/completions", json=body)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: hi"


CASES: list[tuple[str, Any, int, str]] = [
    ("malformed json", b'{"model": "tierwise/auto", "messages": [', 400, "not valid JSON"),
    ("empty body", b"", 400, "empty"),
    ("not an object", [1, 2], 400, "JSON object"),
    ("messages as a string", {"model": "tierwise/auto", "messages": "hi"}, 400, "'messages'"),
    ("max_tokens as a string", {"model": "tierwise/auto", "messages": MSG, "max_tokens": "5"}, 400,
     "max_tokens"),
    ("stream as a number", {"model": "tierwise/auto", "messages": MSG, "stream": 1}, 400, "stream"),
    ("bad role", {"model": "tierwise/auto", "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
    ("no messages", {"model": "tierwise/auto", "messages": []}, 400, "messages"),
    ("missing model", {"messages": MSG}, 400, "'model'"),
    ("unknown model", {"model": "gpt-9", "messages": MSG}, 404, "GET /v1/models"),
    ("bad kind", {"model": "tierwise/auto", "messages": MSG, "metadata": {"tierwise_kind": "dance"}}, 400,
     "classify"),
    ("bad stakes", {"model": "tierwise/auto", "messages": MSG, "metadata": {"tierwise_stakes": "max"}}, 400,
     "normal"),
    ("response_format xml", {"model": "tierwise/auto", "messages": MSG, "response_format": {"type": "xml"}},
     400, "json_schema"),
    ("json_schema without schema", {"model": "tierwise/auto", "messages": MSG,
     "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, 400, "schema is missing"),
    ("invalid schema", {"model": "tierwise/auto", "messages": MSG, "response_format": {"type": "json_schema",
     "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}}, 400, "not a valid JSON Schema"),
    ("tool_choice required", {"model": "tierwise/auto", "messages": MSG, "tool_choice": "required",
     "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tool_choice"),
    ("bad tool name", {"model": "tierwise/auto", "messages": MSG,
     "tools": [{"type": "function", "function": {"name": "bad name\r\n"}}]}, 400, "tools.0.function.name"),
    ("n > 1", {"model": "tierwise/auto", "messages": MSG, "n": 3}, 400, "n > 1"),
    ("thousands of messages", {"model": "tierwise/auto", "messages": MSG * 5000}, 400, "2048"),
    ("image part without url", {"model": "tierwise/auto",
     "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, 400, "input_audio"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "body", "status", "says"), CASES, ids=[c[0] for c in CASES])
def test_bad_chat_requests(http: httpx.Client, what: str, body: Any, status: int, says: str) -> None:
    if isinstance(body, bytes):
        r = http.post("/chat/completions", content=body, headers={"content-type": "application/json"})
    else:
        r = http.post("/chat/completions", json=body)
    err = _error(r, status)
    assert says in err["message"], err
    _still_up(http)


def test_bad_kind_header(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json={"model": "tierwise/auto", "messages": MSG},
                  headers={"x-tierwise-kind": "nope"})  # fmt: skip
    assert "unknown tierwise kind" in _error(r, 400)["message"]


def test_body_over_the_limit_is_413_even_without_content_length(http: httpx.Client) -> None:
    big = (
        b'{"model": "tierwise/auto", "messages": [{"role": "user", "content": "' + b"x" * (5 << 20) + b'"}]}'
    )
    assert _error(http.post("/chat/completions", content=big), 413)["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to trust
        for _ in range(6):
            yield b" " * (1 << 20)

    assert _error(http.post("/chat/completions", content=chunks()), 413)["code"] == "request_too_large"
    _still_up(http)


def test_routes_and_methods(http: httpx.Client) -> None:
    _error(http.get("/nothing-here"), 404)
    _error(http.get("/chat/completions"), 405)
    _still_up(http)


def test_upstream_failure_is_503_with_openai_body(http: httpx.Client, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"faults": [{"fault": "http_503", "every": 1}]})
    body = {"model": "tierwise/nano", "messages": MSG, "metadata": {"tierwise_kind": "classify"}}
    err = _error(http.post("/chat/completions", json=body), 503)
    assert err["type"] == "api_error"
    chaos_server.set_script({})
    _still_up(http)


def test_budget_refusal_is_429(tmp_path: Path, chaos_server: ChaosServer) -> None:
    path = tmp_path / "tierwise.toml"
    path.write_text(
        chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db", "[budget]\nper_run_usd = 1e-7\n")
    )
    with serve(path) as served, httpx.Client(base_url=served.base_url, timeout=15) as http:
        body = {"model": "tierwise/large", "messages": MSG, "metadata": {"tierwise_kind": "plan"}}
        err = _error(http.post("/chat/completions", json=body), 429)
        assert err["code"] == "budget_exceeded"
        assert not chaos_server.requests("/v1/chat/completions")  # refused before anything was sent


def test_bad_responses_and_embeddings_input(http: httpx.Client) -> None:
    r = http.post("/responses", json={"model": "tierwise/auto", "input": [{"type": "web_search_call"}]})
    assert "web_search_call" in _error(r, 400)["message"]
    r = http.post(
        "/responses", json={"model": "tierwise/auto", "input": "x", "tools": [{"type": "web_search"}]}
    )
    assert "function tools" in _error(r, 400)["message"]
    r = http.post("/responses", json={"model": "tierwise/auto", "input": 5})
    assert "'input'" in _error(r, 400)["message"]
    r = http.post("/embeddings", json={"model": "chaos/embed", "input": ""})
    _error(r, 400)
    _still_up(http)
