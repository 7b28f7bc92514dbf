"""`models`, `runs` and `spend` at 80 columns: ids and costs whole (never cut with "…"), full values in
`--json`, and a total row in `spend`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tests.conftest import tw as run_cli
from tierwise.testing import ChaosServer

NARROW = {"COLUMNS": "80"}


def tw(*args: str, cwd: Path) -> str:
    out = run_cli(*args, cwd=cwd, env=NARROW, timeout=180)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _money(v: float, notional: bool) -> str:
    return f"${v:.6f}" + ("*" if notional else "")


@pytest.fixture()
def workdir(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    (tmp_path / "tierwise.toml").write_text(chaos_config(chaos_server.base_url, "sqlite:///ledger.db"))
    tw("ask", "a request long enough to make a label that has to wrap " * 2, "--tier", "mini", cwd=tmp_path)
    tw("ask", "hi", "--tier", "large", cwd=tmp_path)
    return tmp_path


def test_models_keeps_every_id_whole(workdir: Path) -> None:
    shown = tw("models", cwd=workdir)
    assert "…" not in shown and max(map(len, shown.splitlines())) <= 80, shown
    for m in json.loads(tw("models", "--json", cwd=workdir)):
        assert m["id"] in shown, m["id"]
        assert f"{m['output_per_mtok']:.3f}" in shown
    assert "serving: large chaos/large, mini chaos/mini, nano chaos/nano" in shown


def test_runs_keeps_ids_and_costs_whole(workdir: Path) -> None:
    shown = tw("runs", cwd=workdir)
    assert "…" not in shown and max(map(len, shown.splitlines())) <= 80, shown
    runs = json.loads(tw("runs", "--json", cwd=workdir))
    assert len(runs) == 2 and all(len(r["id"]) == 32 for r in runs)  # full ids in --json
    for r in runs:
        assert r["id"][:12] in shown  # the prefix `runs show` and `resume` take
        assert _money(r["cost_usd"], r["notional"]) in shown


@pytest.mark.parametrize("by", ["tier", "model", "run"])
def test_spend_has_a_total_row_and_whole_keys(workdir: Path, by: str) -> None:
    shown = tw("spend", "--by", by, cwd=workdir)
    assert "…" not in shown and max(map(len, shown.splitlines())) <= 80, shown
    rows = json.loads(tw("spend", "--by", by, "--json", cwd=workdir))
    for r in rows:
        assert str(r["key"]) in shown and _money(r["cost_usd"], r["notional"]) in shown
    total = [line.split() for line in shown.splitlines() if line.startswith("total")]
    assert len(total) == 1, shown
    notional = any(r["notional"] for r in rows)
    assert total[0][1] == str(sum(r["calls"] for r in rows))
    assert total[0][-1] == _money(sum(r["cost_usd"] for r in rows), notional)
