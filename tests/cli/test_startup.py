"""The CLI starts light: it imports a system only when that system runs.

`tierwise --help` and `tierwise route` must not load `tierwise.systems.*` nor the heavy stacks the systems
pull (scikit-learn, scipy, Playwright, pypdf). Each check runs in a fresh interpreter, since the test
process itself may have imported any of them already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tierwise.testing import ChaosServer

# Prints, as JSON, the heavy modules loaded after each stage: importing the app, building the command tree
# (every command's --help), and routing a task (no model call).
PROBE = r"""
import json, sys

HEAVY_ROOTS = {"scipy", "sklearn", "playwright", "pypdf"}


def heavy():
    return sorted(
        m for m in sys.modules
        if m == "tierwise.systems" or m.startswith("tierwise.systems.") or m.split(".")[0] in HEAVY_ROOTS
    )


stages, codes = {}, {}
import tierwise.cli.app as cli

stages["import"] = heavy()

from typer.testing import CliRunner

from tierwise.cli.systems_cmd import run_app

runner = CliRunner()
systems = sorted(c.name for c in run_app.registered_commands)
for args in (["--help"], ["run", "--help"], *(["run", name, "--help"] for name in systems)):
    codes[" ".join(args)] = runner.invoke(cli.app, args).exit_code
stages["help"] = heavy()

route = runner.invoke(cli.app, ["route", "Classify this ticket", "--kind", "classify", "--json"])
codes["route"] = route.exit_code
stages["route"] = heavy()
print(json.dumps({"stages": stages, "codes": codes, "systems": systems, "route": route.output}))
"""


@pytest.fixture()
def workdir(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    (tmp_path / "tierwise.toml").write_text(
        chaos_config(chaos_server.base_url, "sqlite:///.tierwise/ledger.db")
    )
    return tmp_path


def test_help_and_route_import_no_system(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIERWISE_CONFIG")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    # The five systems are registered (cheaply), and each one's --help works without loading it.
    assert data["systems"] == sorted(
        ["coding-assistant", "computer-use", "pr-review", "research", "support-triage"]
    )
    assert all(code == 0 for code in data["codes"].values()), data["codes"]
    assert json.loads(data["route"])["tier"] == "nano", data["route"]
    assert data["stages"] == {"import": [], "help": [], "route": []}
