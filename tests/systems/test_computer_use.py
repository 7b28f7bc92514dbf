"""The computer-use agent in real headless Chromium: scripted tiers (chaos server) for exact action
sequences, and one end-to-end run on the embedded default."""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import chaos_config, tw
from tests.systems.webapp import WebApp
from tierwise import InputError, Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer
from tierwise.tools.browser import chromium_path

pytest.importorskip("playwright", reason="the computer-use agent needs Playwright (the [browser] extra)")
pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="Chromium is not installed at /usr/bin/chromium"
)

GOAL = "Order a large pizza for Ada"


@pytest.fixture()
def app() -> Iterator[WebApp]:
    with WebApp() as web:
        yield web


def act(action: str, target: str = "", value: str = "") -> dict[str, Any]:
    return {
        "match": {"model": "mini-model"},
        "times": 1,
        "reply": {"json": {"action": action, "target": target, "value": value}},
    }


def script(*actions: dict[str, Any], outcome: str = "progress") -> dict[str, Any]:
    return {
        "rules": [
            {
                "match": {"model": "large-model", "system_contains": "You plan browser interactions"},
                "reply": {"json": {"steps": ["type Ada into Name", "select Large", "click Submit"]}},
            },
            {
                "match": {"model": "large-model", "system_contains": "You judge"},
                "reply": {"json": {"success": True, "reason": "the thank-you page is shown"}},
            },
            *actions,
            {"match": {"model": "mini-model"}, "reply": {"json": {"action": "done"}}},
            {"match": {"model": "nano-model"}, "reply": {"json": {"outcome": outcome}}},
        ]
    }


def _chat(server: ChaosServer, model: str) -> list[list[dict[str, Any]]]:
    return [r["body"]["messages"] for r in server.requests("/v1/chat/completions") if r["model"] == model]


def _text(msg: dict[str, Any]) -> str:
    c = msg["content"]
    return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c)


async def test_form_is_filled_and_submitted(
    app: WebApp, chaos_toml: Path, chaos_server: ChaosServer, tmp_path: Path
) -> None:
    from tierwise.systems import computer_use

    chaos_server.set_script(
        script(
            act("type", 'textbox "Name"', "Ada"),
            act("select", 'combobox "Size"', "Large"),
            act("click", 'button "Submit"'),
        )
    )
    out = tmp_path / "result.json"
    async with Session(chaos_toml) as s:
        result = await computer_use.run(s, app.url("/"), GOAL, max_steps=6, out=out)
    d = result.to_dict()
    assert [(st["action"], st["observed"], st["outcome"]) for st in d["steps"]] == [
        ("type", "changed", "progress"),
        ("select", "changed", "progress"),
        ("click", "changed", "progress"),
        ("done", "unchanged", "progress"),
    ]
    assert d["final_url"] == app.url("/submit?name=Ada&size=large")
    assert d["success"] and d["done"] and d["stopped"] == "done"
    assert d["plan"] == ["type Ada into Name", "select Large", "click Submit"]
    # The page really changed: the last mini prompt saw the app's thank-you heading.
    assert 'heading "Thank you, Ada!"' in _text(_chat(chaos_server, "mini-model")[-1][-1])
    assert 0 < d["total_cost_usd"] < d["all_large_counterfactual_usd"]
    assert set(d["cost_per_tier"]) == {"large", "mini", "nano"}
    assert len(d["screenshots"]) == 5 and all(
        Path(p).read_bytes()[:4] == b"\x89PNG" for p in d["screenshots"]
    )
    assert Path(d["screenshots"][0]).name == "result-step-00.png"

    ledger = Ledger(Config.load(chaos_toml).ledger.url)
    run = ledger.get_run(d["run_id"])
    assert run.kind == "system:computer-use" and run.status == "ok" and run.metadata["max_steps"] == 6
    calls = ledger.calls(d["run_id"])
    assert sorted({c.tier for c in calls}) == ["large", "mini", "nano"] and len(calls) == 9
    steps = ledger.steps(d["run_id"])
    assert [json.loads(st.output or "{}")["action"] for st in steps] == ["type", "select", "click", "done"]
    ledger.close()


async def test_page_text_cannot_change_goal_or_allowlist(
    app: WebApp, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    from tierwise.systems import computer_use

    # A mini model that obeys the page: it tries the injected URL, then the page's link to it.
    chaos_server.set_script(
        script(
            act("navigate", "", "http://evil.example/collect"),
            act("click", 'link "Continue"'),
            outcome="blocked",
        )
    )
    async with Session(chaos_toml) as s:
        result = await computer_use.run(s, app.url("/injection"), GOAL, max_steps=4)
    d = result.to_dict()
    assert [(st["action"], st["observed"]) for st in d["steps"]] == [
        ("navigate", "blocked"),
        ("click", "blocked"),
        ("done", "unchanged"),
    ]
    assert d["steps"][0]["url"] == app.url("/injection") and d["final_url"] == app.url("/injection")
    assert d["allowed_hosts"] == ["127.0.0.1"] and d["goal"] == GOAL
    assert "http://evil.example/collect" in d["blocked_requests"]
    for model in ("large-model", "mini-model"):
        for messages in _chat(chaos_server, model):
            system = " ".join(_text(m) for m in messages if m["role"] == "system")
            assert GOAL in system
            assert model == "large-model" or "Allowed hosts: 127.0.0.1\n" in system
            assert "evil.example" not in system  # page text never reaches the instructions
    assert any("ignore your goal" in _text(m[-1]) for m in _chat(chaos_server, "mini-model"))


async def test_bad_inputs_are_input_errors(app: WebApp, chaos_toml: Path) -> None:
    from tierwise.systems import computer_use

    async with Session(chaos_toml) as s:
        with pytest.raises(InputError, match="unreachable"):
            await computer_use.run(s, f"http://127.0.0.1:{_closed_port()}/", GOAL)
        with pytest.raises(InputError, match="outside the allowlist"):
            await computer_use.run(s, app.url("/redirect?to=" + app.other_url("/")), GOAL)
        with pytest.raises(InputError, match="--max-steps"):
            await computer_use.run(s, app.url("/"), GOAL, max_steps=0)
    assert app.hits_on("localhost") == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--url", "http://127.0.0.1:{closed}/"], "is unreachable"),
        (["--url", "{app}/redirect?to={other}/"], "outside the allowlist"),
        (["--url", "{app}/", "--max-steps", "many"], "--max-steps must be a whole number"),
        (["--url", "{app}/", "--max-steps", "0"], "--max-steps must be between 1 and 100"),
        (["--url", "{app}/", "--allow-host", "a/b"], "is not a host name"),
        (["--url", "{app}/", "--out", "result.txt"], "must end in one of .json, .md"),
    ],
)
def test_cli_bad_input_is_one_line(
    app: WebApp, chaos_server: ChaosServer, tmp_path: Path, extra: list[str], message: str
) -> None:
    (tmp_path / "tierwise.toml").write_text(chaos_config(chaos_server.base_url, "sqlite:///ledger.db"))
    fill = {"closed": _closed_port(), "app": app.url("").rstrip("/"), "other": app.other_url("").rstrip("/")}
    out = tw("run", "computer-use", GOAL, *(a.format(**fill) for a in extra), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.local_model
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs the [local] extra")
def test_embedded_default_end_to_end(app: WebApp, tmp_path: Path) -> None:
    (tmp_path / "tierwise.toml").write_text('[ledger]\nurl = "sqlite:///ledger.db"\n')
    out = tw(
        "run",
        "computer-use",
        "--url",
        app.url("/"),
        GOAL,
        "--max-steps",
        "2",
        "--json",
        "--out",
        "cu.md",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert 1 <= len(d["steps"]) <= 2 and d["stopped"] in ("done", "max_steps")
    assert (
        d["notional"] and d["total_cost_usd"] > 0 and d["all_large_counterfactual_usd"] >= d["total_cost_usd"]
    )
    assert "# Computer use: " in (tmp_path / "cu.md").read_text()
    assert json.loads((tmp_path / "cu.json").read_text())["run_id"] == d["run_id"]  # the other format
    assert (tmp_path / "cu-step-00.png").read_bytes()[:4] == b"\x89PNG"
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    calls = ledger.calls(d["run_id"])
    # plan + (mini + nano) per action + judge: every tier was called and recorded.
    assert {c.tier for c in calls} >= {"large", "mini"} and len(ledger.steps(d["run_id"])) == len(d["steps"])
    assert ledger.get_run(d["run_id"]).status == "ok"
    ledger.close()
