"""The CLI as a user runs it: a real subprocess, exit codes, one-line errors, JSON fields."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tests.conftest import tw as run_cli
from tierwise.testing import ChaosServer


def tw(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, env=env, timeout=180)


@pytest.fixture()
def workdir(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    (tmp_path / "tierwise.toml").write_text(
        chaos_config(chaos_server.base_url, "sqlite:///.tierwise/ledger.db")
    )
    return tmp_path


def test_route_json_fields(workdir: Path) -> None:
    out = tw("route", "label this message", "--kind", "classify", "--json", cwd=workdir)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"tier", "model", "reason", "kind"} <= data.keys()
    assert (data["tier"], data["model"], data["kind"]) == ("nano", "chaos/nano", "classify")
    assert data["router"] == "policy" and data["router_calls_model"] is False


def test_route_says_when_the_router_decides_with_a_model(workdir: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"rules": [{"reply": {"json": {"kind": "classify", "tier": "mini"}}}]})
    toml = workdir / "tierwise.toml"
    toml.write_text(toml.read_text() + '\n[routing]\nrouter = "nano"\n')
    out = tw("route", "label this message", "--kind", "classify", "--json", cwd=workdir)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["router_calls_model"] is True and data["routing_calls"] == 1 and data["tier"] == "mini"
    human = tw("route", "label this message", "--kind", "classify", cwd=workdir)
    assert "the nano router decides with a model: 1 routing call(s) made" in human.stdout


def test_ask_json_and_ledger_views(workdir: Path) -> None:
    # A text the static kind classifier is unsure of, so e5 decides the kind: a metered embed call (not
    # with a pinned tier: there the kind routes nothing and the static guess stands).
    out = tw("ask", "Who won the world cup in 1998?", "--json", cwd=workdir)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"text", "tier", "model", "usage", "cost_usd"} <= data.keys()
    assert data["model"] == f"chaos/{data['tier']}" and data["cost_usd"] > 0
    runs = json.loads(tw("runs", "--json", cwd=workdir).stdout)
    assert runs[0]["id"] == data["run_id"] and runs[0]["status"] == "ok"
    spend = json.loads(tw("spend", "--by", "model", "--json", cwd=workdir).stdout)
    assert {r["key"]: r["calls"] for r in spend} == {data["model"]: 1, "local/e5-small": 1}
    show = tw("runs", "show", data["run_id"][:10], "--json", cwd=workdir)
    assert show.returncode == 0
    calls = json.loads(show.stdout)["calls"]
    # The kind was not given: a metered nano embedding inferred it before the chat call.
    assert [(c["operation"], c["model"]) for c in calls] == [
        ("embed", "local/e5-small"),
        ("chat", data["model"]),
    ]
    models = json.loads(tw("models", "--json", cwd=workdir).stdout)
    assert any(m["id"] == "chaos/nano" and m["serves_tier"] == "nano" for m in models)


def test_schema_file(workdir: Path) -> None:
    schema = workdir / "s.json"
    schema.write_text(
        json.dumps(
            {"type": "object", "properties": {"urgency": {"enum": ["low", "high"]}}, "required": ["urgency"]}
        )
    )
    out = tw("ask", "urgency of a stolen card", "--schema", str(schema), "--json", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["output"] == {"urgency": "low"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", ""], "the text is empty"),
        (["ask", "hi", "--tier", "huge"], "unknown tier 'huge'"),
        (["ask", "hi", "--model", "nope"], "unknown model 'nope'"),
        (["ask", "hi", "--budget", "0"], "--budget must be greater than 0"),
        (["ask", "hi", "--budget", "-1"], "--budget must be greater than 0"),
        (["ask", "hi", "--kind", "plan", "--budget", "0.0000001"], "worst case"),
        (["ask", "hi", "--schema", "missing.json"], "not found"),
        (["route", "hi", "--kind", "guess"], "unknown task kind"),
        (["spend", "--by", "colour"], "not one of tier, model, run, kind"),
        (["runs", "show", "ffffffffffff"], "ffffffffffff"),
    ],
)
def test_bad_input_is_one_clear_line(workdir: Path, args: list[str], message: str) -> None:
    out = tw(*args, cwd=workdir)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_malformed_schema_and_config(workdir: Path) -> None:
    (workdir / "bad.json").write_text("{not json")
    out = tw("ask", "hi", "--schema", "bad.json", cwd=workdir)
    assert out.returncode == 2 and "not valid JSON" in out.stderr
    (workdir / "tierwise.toml").write_text("[budget]\nper_run_usd = 0\n")
    out = tw("ask", "hi", cwd=workdir)
    assert out.returncode == 2 and "budget.per_run_usd" in out.stderr and "tierwise.toml" in out.stderr


def test_remote_model_without_key(tmp_path: Path) -> None:
    (tmp_path / "tierwise.toml").write_text('[tiers]\nnano = "openai/gpt-5.4-nano"\n')
    out = tw("ask", "hi", "--tier", "nano", cwd=tmp_path)
    assert out.returncode == 2 and "set OPENAI_API_KEY" in out.stderr and "Traceback" not in out.stderr
