"""The computer-use agent in real headless Chromium: scripted tiers (chaos server) for exact action
sequences, and one end-to-end run on the embedded default."""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import chaos_config, tw
from tests.systems.webapp import WebApp
from tierwise import InputError, Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer
from tierwise.tools.browser import chromium_path

if TYPE_CHECKING:
    from tierwise.systems.computer_use import ComputerUseResult

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
                "reply": {
                    "json": {
                        "success": True,
                        "reason": "the thank-you page is shown",
                        "evidence": "Thank you, Ada!",
                    }
                },
            },
            *actions,
            {"match": {"model": "mini-model"}, "reply": {"json": {"action": "done"}}},
            {"match": {"model": "nano-model"}, "reply": {"json": {"outcome": outcome}}},
        ]
    }


async def drive(toml: Path, url: str, goal: str = GOAL, **options: Any) -> ComputerUseResult:
    """One run as the CLI opens it: inputs checked, then the run, then the agent inside it."""
    from tierwise.systems import computer_use

    max_steps = options.get("max_steps", 10)
    allowlist = computer_use.check_inputs(url, goal, max_steps, options.get("allow_hosts", ()))
    meta = computer_use.run_metadata(url, max_steps, allowlist)
    async with (
        Session(toml) as s,
        s.run(computer_use.SYSTEM, computer_use.run_label(goal), metadata=meta) as sc,
    ):
        return await computer_use.run(sc, url, goal, **options)


def _chat(server: ChaosServer, model: str) -> list[list[dict[str, Any]]]:
    return [r["body"]["messages"] for r in server.requests("/v1/chat/completions") if r["model"] == model]


def _text(msg: dict[str, Any]) -> str:
    c = msg["content"]
    return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c)


async def test_form_is_filled_and_submitted(
    app: WebApp, chaos_toml: Path, chaos_server: ChaosServer, tmp_path: Path
) -> None:
    chaos_server.set_script(
        script(
            act("type", 'textbox "Name"', "Ada"),
            act("select", 'combobox "Size"', "Large"),
            act("click", 'button "Submit"'),
        )
    )
    out = tmp_path / "result.json"
    result = await drive(chaos_toml, app.url("/"), max_steps=6, out=out)
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
    # Step records name the act turn's tier, from its decision (the outcome's nano call is in the cost).
    assert [st.tier for st in steps] == ["mini"] * 4
    assert [st.metadata["tiers"] for st in steps] == [["mini", "nano"]] * 3 + [["mini"]]
    # No chaos model reads images: the router refused the screenshot, the agent fell back to text.
    assert not any(st.metadata["screenshot_sent"] for st in steps)
    assert len(d["notes"]) == 1 and "no model in reach has vision" in d["notes"][0]
    assert all(isinstance(m[-1]["content"], str) for m in _chat(chaos_server, "mini-model"))
    ledger.close()


async def test_default_policy_decides_each_stage(
    app: WebApp, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    """With the default policy: plan and judge on large, act turns on mini, outcomes on nano, each for the
    reason the policy gives, as the ledger records it."""
    chaos_server.set_script(script(act("type", 'textbox "Name"', "Ada")))
    result = await drive(chaos_toml, app.url("/"), max_steps=3)
    assert [st.action for st in result.steps] == ["type", "done"]
    ledger = Ledger(Config.load(chaos_toml).ledger.url)
    calls = [(c.step_id, c.tier, c.task_kind, c.reason) for c in ledger.calls(result.run_id)]
    ledger.close()
    assert sorted(calls, key=str) == sorted(
        [
            ("plan", "large", "plan", "kind plan → large (default)"),
            ("step-1", "mini", "screenshot", "kind screenshot → mini (default)"),
            ("step-1", "nano", "classify", "kind classify → nano (default)"),
            ("step-2", "mini", "screenshot", "kind screenshot → mini (default)"),
            ("judge", "large", "final_qa", "kind final_qa → large (default)"),
        ],
        key=str,
    )


@pytest.mark.parametrize("seeing", ["mini", "large"])
async def test_screenshot_goes_to_a_model_that_sees(
    app: WebApp, chaos_server: ChaosServer, tmp_path: Path, seeing: str
) -> None:
    """A screenshot turn requires vision; the router keeps it on mini when mini sees, else moves it up."""
    limit = {"mini": 500, "large": 1000}[seeing]  # max_output_tokens: one line per model in chaos_config
    text = chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db")
    old = f'max_output_tokens = {limit}\ncapabilities = ["json_schema", "tools"]'
    assert text.count(old) == 1
    toml = tmp_path / "tierwise.toml"
    toml.write_text(text.replace(old, old.replace('["json_schema"', '["vision", "json_schema"')))
    rules = script()["rules"]
    rules.insert(
        0, {"match": {"system_contains": "You operate a web browser"}, "reply": {"json": {"action": "done"}}}
    )
    chaos_server.set_script({"rules": rules})
    result = await drive(toml, app.url("/"), max_steps=2)
    assert result.done and result.notes == []
    (turn,) = [m for m in _chat(chaos_server, f"{seeing}-model") if "You operate" in _text(m[0])]
    parts = turn[-1]["content"]
    assert isinstance(parts, list) and parts[-1]["image_url"]["url"].startswith("data:image/png;base64,")
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    (call,) = [c for c in ledger.calls(result.run_id) if c.step_id == "step-1"]
    (step,) = ledger.steps(result.run_id)
    ledger.close()
    assert call.tier == seeing and call.task_kind == "screenshot"
    assert step.tier == seeing and step.metadata["screenshot_sent"] is True
    if seeing == "large":
        assert "chaos/mini lacks vision" in call.reason and "moved up to large" in call.reason


async def test_page_text_cannot_change_goal_or_allowlist(
    app: WebApp, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    # A mini model that obeys the page: it tries the injected URL, then the page's link to it.
    chaos_server.set_script(
        script(
            act("navigate", "", "http://evil.example/collect"),
            act("click", 'link "Continue"'),
            outcome="blocked",
        )
    )
    result = await drive(chaos_toml, app.url("/injection"), max_steps=4)
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

    with pytest.raises(InputError, match="--max-steps"):
        computer_use.check_inputs(app.url("/"), GOAL, 0, ())
    async with Session(chaos_toml) as s:
        for url, options, message in [
            (f"http://127.0.0.1:{_closed_port()}/", {}, "unreachable"),
            (app.url("/redirect?to=" + app.other_url("/")), {}, "outside the allowlist"),
            (app.url("/"), {"max_steps": 0}, "--max-steps"),
        ]:
            with pytest.raises(InputError, match=message):
                async with s.run(computer_use.SYSTEM, GOAL) as scope:
                    await computer_use.run(scope, url, GOAL, **options)
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
    # 0 when the goal's evidence is on the final page, 1 when not: a 135M model rarely gets there in 2 steps
    assert out.returncode in (0, 1), out.stderr
    d = json.loads(out.stdout)
    assert out.returncode == (0 if d["success"] else 1) and d["verdict"]
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
