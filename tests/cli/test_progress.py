"""Progress as a user sees it when stderr is piped: plain lines on stderr (stage, items, calls, spend
against the budget), throttled, while stdout stays one JSON document in --json mode."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import chaos_config, tw
from tests.orchestration.test_orchestrate import plan_script
from tierwise.testing import ChaosServer


def test_orchestrate_reports_progress_on_stderr_and_keeps_stdout_json(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({**plan_script(), "latency_s": 0.8})  # a run of a few seconds
    (tmp_path / "tierwise.toml").write_text(chaos_config(chaos_server.base_url, "sqlite:///l.db"))
    out = tw("orchestrate", "Summarize the TODOs", "--budget", "1", "--json", cwd=tmp_path, timeout=180)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"] == "three TODOs, one risky"  # stdout: the JSON alone
    lines = [ln for ln in out.stderr.splitlines() if " calls · $" in ln or " call · $" in ln]
    assert lines, out.stderr
    pattern = r"^(plan|execute \d/3|synthesize) · \d+ calls? · \$\d\.\d{6} of \$1\.00 budget · 0:\d\d"
    assert all(re.match(pattern, ln) for ln in lines), lines
    assert any(ln.startswith(("execute", "synthesize")) for ln in lines), lines
    assert len(lines) <= 12  # throttled: about one a second plus stage changes
