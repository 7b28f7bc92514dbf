"""The integrations' examples run as a user runs them (a real process, tierwise.toml in the working
directory), against the chaos server scripted to hand off, call tools and answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tierwise.testing import ChaosServer

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIERWISE_CONFIG")}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_agents_planner_example(tmp_path: Path, chaos_server: ChaosServer) -> None:
    pytest.importorskip("agents")
    (tmp_path / "tierwise.toml").write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db"))
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"system_contains": "You are the planner"}, "times": 1,
                 "reply": {"tool_calls": [{"name": "transfer_to_calculator", "arguments": {}, "id": "h1"}]}},
                {"match": {"system_contains": "You are the calculator"}, "times": 1,
                 "reply": {"tool_calls": [{"name": "add", "arguments": {"a": 17.5, "b": 24.5}, "id": "a1"}]}},
                {"match": {"system_contains": "You are the calculator"}, "reply": "17.5 + 24.5 = 42"},
            ]
        }
    )  # fmt: skip
    out = run_example("agents_planner.py", tmp_path, "What is 17.5 + 24.5?")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "17.5 + 24.5 = 42"
    assert lines[1].startswith("answered by calculator;") and lines[1].endswith(" ok")
    assert [ln.split()[0] for ln in lines[2:5]] == ["large", "mini", "mini"]
    assert lines[-1].startswith("3 model calls")


def test_pydantic_ai_example(tmp_path: Path, chaos_server: ChaosServer) -> None:
    pytest.importorskip("pydantic_ai")
    (tmp_path / "tierwise.toml").write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db"))
    chaos_server.set_script(
        {
            "rules": [
                {
                    "times": 1,
                    "reply": {"tool_calls": [{"name": "lookup_order", "arguments": {"order_id": "1042"}}]},
                },
                {"reply": {"json": {"intent": "refund", "order_id": "1042", "urgent": True}}},
            ]
        }
    )
    out = run_example("pydantic_ai_agent.py", tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == '{"intent":"refund","order_id":"1042","urgent":true}'
    assert lines[1].endswith(" ok")
    assert [ln.split()[0] for ln in lines[2:4]] == ["mini", "mini"]
    bodies = [e["body"] for e in chaos_server.requests("/v1/chat/completions")]
    assert any(m["role"] == "tool" and "shipped 3 days ago" in m["content"] for m in bodies[1]["messages"])
