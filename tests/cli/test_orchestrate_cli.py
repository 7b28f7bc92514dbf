"""``tierwise orchestrate`` and ``tierwise resume`` as a user runs them, against the chaos server."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import tw
from tests.conftest import chaos_config
from tests.orchestration.test_orchestrate import plan_script
from tierwise.testing import ChaosServer


def test_orchestrate_then_resume_a_finished_run(tmp_path: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(plan_script())
    (tmp_path / "tierwise.toml").write_text(chaos_config(chaos_server.base_url, "sqlite:///.tierwise/l.db"))
    out = tw("orchestrate", "Summarize the TODOs", "--budget", "1", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["answer"] == "three TODOs, one risky"
    # Tiers are the router's decisions: the plan's hints (mini, large, nano) bounded by each kind.
    assert [(s["id"], s["tier"]) for s in data["steps"]] == [
        ("find", "mini"),
        ("label", "nano"),
        ("judge", "mini"),
    ]
    sent = len(chaos_server.requests("/v1/chat/completions"))
    again = tw("resume", data["run_id"], "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["resumed"] and resumed["answer"] == data["answer"]
    assert len(chaos_server.requests("/v1/chat/completions")) == sent  # nothing paid twice
