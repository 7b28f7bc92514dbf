"""Transfer and calibration: a router trained on one task routes another; how far its predictions hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tierwise.evaluation.datasets import load_outcomes
from tierwise.evaluation.transfer import transfer
from tierwise.routing.outcomes import Outcomes

MODELS = ("mistralai/mistral-7b-chat", "zero-one-ai/Yi-34B-Chat", "gpt-4-1106-preview")


def _task(outcomes_dir: Path, name: str, rows: int) -> Outcomes:
    data = load_outcomes([outcomes_dir / "routerbench" / f"{name}_train.csv"]).select_models(MODELS)
    return data.subset(np.arange(rows))


def test_transfer_reports_calibration_and_a_monotone_fallback(outcomes_dir: Path) -> None:
    arc, wino = _task(outcomes_dir, "arc_challenge", 300), _task(outcomes_dir, "winogrande", 200)
    got = transfer(arc, wino, source="arc", target="wino", embedder="static", floors=(None, 0.5, 0.9, 1.0))
    assert got.n_test == 200 and got.models == MODELS and got.apgr is None  # three models: no APGR
    assert 0 < got.aiq <= 1 and 0 < got.hull_aiq <= 1
    assert got.reliability["n"] == 200 * 3 and sum(got.reliability["count"]) == 600
    assert 0 <= got.ece_in_task <= 1 and 0 <= got.ece <= 1
    shares = [f.share for f in got.fallbacks]
    assert shares[0] == 0 and shares == sorted(shares)  # a higher floor defers more
    everything = got.fallbacks[-1]  # no prediction reaches 1.0: the policy (large) takes every call
    assert everything.share == 1.0
    assert everything.quality == pytest.approx(got.large.quality)
    assert everything.cost == pytest.approx(got.large.cost)


def test_replay_report_has_a_reliability_diagram(outcomes_dir: Path, tmp_path: Path) -> None:
    from tierwise.cli.eval_cmd import eval_app

    src = outcomes_dir / "routerbench" / "arc_challenge_train.csv"
    out = tmp_path / "report"
    result = CliRunner().invoke(
        eval_app, ["replay", "--outcomes", str(src), "--embedder", "static", "--report", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert 'src="reliability.png"' in (out / "index.html").read_text("utf-8")
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
