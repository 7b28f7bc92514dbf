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


# `tierwise --help` as a user runs it, then the modules it loaded: none of the stacks a command needs when it
# runs (the ledger's SQLAlchemy, the providers' SDKs, pydantic and the models built on it, typer's rich help
# renderer). Loading them took --help to 2-4 s; a timing-free check holds start-up to what it needs.
HELP_PROBE = r"""
import json, sys
sys.argv = ["tierwise", "--help"]
try:
    from tierwise.cli.app import main
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
HEAVY_AT_HELP = (
    "sqlalchemy", "openai", "anthropic", "httpx", "numpy", "opentelemetry", "typer.rich_utils",
    "tierwise.core", "tierwise.config", "tierwise.ledger", "tierwise.session", "tierwise.runtime",
    "tierwise.systems",
)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "heavy"),
    [
        # typer itself loads pydantic to parse a group's own options (`runs --limit`), not for the top.
        (["--help"], (*HEAVY_AT_HELP, "pydantic")),
        (["runs", "--help"], HEAVY_AT_HELP),
        (["eval", "--help"], HEAVY_AT_HELP),
    ],
)
def test_help_loads_no_heavy_module(tmp_path: Path, args: list[str], heavy: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIERWISE_CONFIG")}
    probe = HELP_PROBE.replace('["tierwise", "--help"]', json.dumps(["tierwise", *args]))
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["code"] == 0
    loaded = [m for m in data["modules"] if any(m == h or m.startswith(h + ".") for h in heavy)]
    assert loaded == []


def test_flags_show_as_flags_in_help(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIERWISE_CONFIG")}
    for args in (["runs", "--help"], ["ask", "--help"], ["run", "pr-review", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-m", "tierwise", *args],
            cwd=tmp_path, env={**env, "COLUMNS": "100"}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "--json" in proc.stdout and "<bool>" not in proc.stdout, proc.stdout
