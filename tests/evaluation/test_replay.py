"""Offline replay and the ``tierwise eval replay|train`` commands, on small slices of the real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tierwise.evaluation.baselines import make_router
from tierwise.evaluation.datasets import load_outcomes
from tierwise.evaluation.replay import replay, split_outcomes
from tierwise.routing.learned import LearnedModel

runner = CliRunner()


def _head(src: Path, dst: Path, rows: int) -> Path:
    """The first ``rows`` records of a CSV (fields hold newlines, so through the csv module)."""
    csv.field_size_limit(1 << 30)
    with src.open(newline="", encoding="utf-8") as fin, dst.open("w", newline="", encoding="utf-8") as fout:
        reader, writer = csv.reader(fin), csv.writer(fout)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if i >= rows:
                break
            writer.writerow(row)
    return dst


@pytest.fixture(scope="module")
def small_arc(outcomes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = outcomes_dir / "routerbench" / "arc_challenge_train.csv"
    return _head(src, tmp_path_factory.mktemp("arc") / "arc_small.csv", 240)


@pytest.fixture(scope="module")
def small_mmlu(outcomes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mmlu")
    for path in sorted((outcomes_dir / "routellm" / "mmlu").glob("mmlu_*.csv"))[:8]:
        _head(path, out / path.name, 50)
    return out


def test_replay_json_fields_via_cli(small_arc: Path) -> None:
    from tierwise.cli.eval_cmd import eval_app

    result = runner.invoke(
        eval_app,
        ["replay", "--outcomes", str(small_arc), "--router", "learned", "--json", "--embedder", "static"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("router", "n", "aiq", "single_hull_aiq", "oracle", "best_single"):
        assert key in data
    assert data["router"] == "learned" and data["n"] > 0
    assert set(data["oracle"]) == {"quality", "cost"} and data["best_single"]["model"] == "gpt-4-1106-preview"
    assert 0 < data["aiq"] <= 1 and 0 < data["single_hull_aiq"] <= 1
    assert "apgr" not in data  # eleven models: RouteLLM's metrics are for two


def test_two_model_replay_has_apgr_and_cpt(small_mmlu: Path) -> None:
    from tierwise.cli.eval_cmd import eval_app

    files = sorted(small_mmlu.glob("*.csv"))
    args = [
        "replay",
        "--outcomes",
        *map(str, files[:3]),
        "--train",
        *map(str, files[3:]),
        "--json",
        "--embedder",
        "static",
    ]
    result = runner.invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cost_unit"] == "strong_share" and data["n"] == 150
    assert -1 < data["apgr"] < 2
    assert data["cpt50"] is None or 0 <= data["cpt50"] <= 100
    assert "cpt80" in data


def test_report_writes_html_and_png(small_arc: Path, tmp_path: Path) -> None:
    from tierwise.cli.eval_cmd import eval_app

    out = tmp_path / "report"
    result = runner.invoke(
        eval_app, ["replay", "--outcomes", str(small_arc), "--router", "cascade", "--report", str(out)]
    )
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text("utf-8")
    assert 'src="frontier.png"' in page and "AIQ" in page
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--outcomes", "/no/such.csv"], "not found"),
        (["--router", "learned"], "--outcomes is required"),
        (["--outcomes", "{arc}", "--router", "nope"], "unknown router 'nope'"),
        (["--outcomes", "{arc}", "--train", "{mmlu}"], "different models"),
        (["--outcomes", "{mmlu}", "--router", "cascade"], "recorded responses"),
        (["--outcomes", "{mmlu}", "--router", "cascade+"], "recorded responses"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, small_arc: Path, small_mmlu: Path
) -> None:
    from tierwise.cli.eval_cmd import eval_app

    args = [a.format(arc=small_arc, mmlu=small_mmlu) for a in args]
    result = runner.invoke(eval_app, ["replay", *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_writes_a_loadable_router(
    small_arc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tierwise.cli.eval_cmd import eval_app

    out = tmp_path / "router.npz"
    result = runner.invoke(
        eval_app, ["train", "--outcomes", str(small_arc), "--out", str(out), "--json", "--embedder", "static"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    model = LearnedModel.load(out)
    assert summary["models"] == list(model.models) and model.n_train == summary["n_train"]
    # An empty ledger has nothing to train on: the error says how to record outcomes.
    toml = tmp_path / "tierwise.toml"
    toml.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path}/ledger.db"\n')
    monkeypatch.setenv("TIERWISE_CONFIG", str(toml))
    refused = runner.invoke(eval_app, ["train", "--from-ledger", "--out", str(out)])
    assert refused.exit_code == 2 and "no shadow checks to train on" in refused.stderr
    assert "[shadow] share" in refused.stderr


def test_train_cascade_plus_writes_a_router_file(small_arc: Path, tmp_path: Path) -> None:
    from tierwise.cli.eval_cmd import eval_app
    from tierwise.config import Config
    from tierwise.errors import ConfigError
    from tierwise.routing.cascade_model import CascadeRoutingModel
    from tierwise.routing.factory import build_router

    out = tmp_path / "cascade.npz"
    args = ["train", "--router", "cascade+", "--outcomes", str(small_arc), "--out", str(out), "--json"]
    result = runner.invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    model = CascadeRoutingModel.load(out)
    assert summary["router"] == "cascade+" and summary["plan"] == model.label
    assert summary["models"] == list(model.models) and summary["n_train"] == model.n_train > 200
    # By default the cheapest plan expected to match the best single model; --target-cost buys less.
    assert model.plan.expected_quality >= model.best_quality - 1e-12
    cheap = runner.invoke(eval_app, [*args, "--target-cost", str(model.plan.expected_cost / 3)])
    assert cheap.exit_code == 0, cheap.output
    assert json.loads(cheap.stdout)["expected_cost"] <= model.plan.expected_cost / 3
    # Deployed on a catalog that lacks its models: the mapping error names the model and the key.
    config = Config.from_dict({"routing": {"router": "cascade+", "learned_model": str(out)}})
    with pytest.raises(ConfigError, match=r"has no catalog model: map it, e.g. routing.learned_mapping"):
        build_router(config)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--outcomes", "{mmlu}"], "recorded responses"),
        (["--outcomes", "/no/such.csv"], "not found"),
        (["--from-ledger"], "cascade+ cannot train --from-ledger"),
        (["--outcomes", "{arc}", "--target-large-share", "0.2"], "for cascade+ use --target-cost"),
        (["--outcomes", "{arc}", "--target-cost", "1e-12"], "no cascade+ plan fits a mean cost of 1e-12"),
    ],
)
def test_train_cascade_plus_bad_input_is_one_line(
    args: list[str], message: str, small_arc: Path, small_mmlu: Path, tmp_path: Path
) -> None:
    from tierwise.cli.eval_cmd import eval_app

    args = [a.format(arc=small_arc, mmlu=small_mmlu) for a in args]
    result = runner.invoke(eval_app, ["train", "--router", "cascade+", *args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    wrong = runner.invoke(eval_app, ["train", "--router", "knn", "--outcomes", str(small_arc), "--out", "r"])
    assert wrong.exit_code == 2 and "--router must be learned or cascade+" in wrong.stderr


def test_replay_function_split_and_baselines(small_arc: Path) -> None:
    data = load_outcomes([small_arc])
    train, test, split = split_outcomes(data, seed=3)
    assert train.n + test.n == data.n and "held out" in split
    random = replay(make_router("random"), train, test)
    assert random.single_hull_aiq >= random.aiq - 0.05  # random mixing cannot beat the hull by much
    knn = replay(make_router("knn-tfidf"), train, test)
    assert len(knn.points) > 10 and knn.max_cost == max(p.cost for p in knn.singles)
