"""Loaders on the real shared files, and the clear refusals for bad outcome files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tierwise.errors import InputError
from tierwise.evaluation.datasets import load_outcomes, load_routellm
from tierwise.routing.outcomes import same_models


def test_routerbench_arc_skips_and_counts_blank_scores(outcomes_dir: Path) -> None:
    arc = load_outcomes([outcomes_dir / "routerbench" / "arc_challenge_train.csv"])
    assert len(arc.models) == 11 and "gpt-4-1106-preview" in arc.models
    assert arc.n + arc.skipped == 1039 and arc.skipped == 20
    assert arc.cost_unit == "usd" and (arc.costs > 0).all()
    assert set(np.unique(arc.scores)) <= {0.0, 1.0}
    assert arc.responses is not None and len(arc.responses[0]) == 11
    # Prompts are the text of the Python list literal the CSV stores; the real question comes last.
    assert not arc.prompts[0].startswith("['") and arc.prompts[0].rstrip().endswith("Answer:")
    assert set(arc.groups) == {"arc-challenge"}


def test_mmlu_files_cost_the_strong_share_and_drop_contaminated_prompts(outcomes_dir: Path) -> None:
    mmlu = load_routellm([outcomes_dir / "routellm" / "mmlu"])
    assert mmlu.models == ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")
    assert mmlu.meta["strong"] == "gpt-4-1106-preview"
    assert mmlu.excluded == 3 and mmlu.n == 9762
    assert mmlu.mean_cost().tolist() == [0.0, 1.0]
    assert len(set(mmlu.groups)) == 38 and "anatomy" in mmlu.groups
    train, test = mmlu.train_test_split(0.25, seed=1, by_group=True)
    assert not set(train.groups) & set(test.groups)
    assert train.n + test.n == mmlu.n


def test_group_folds_keep_subjects_whole(outcomes_dir: Path) -> None:
    mmlu = load_outcomes([outcomes_dir / "routellm" / "mmlu"])
    seen: set[str] = set()
    for train, test in mmlu.folds(5, by_group=True):
        assert not set(train.groups) & set(test.groups)
        seen |= set(test.groups)
    assert seen == set(mmlu.groups)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_outcomes([tmp_path / "missing.csv"])
    with pytest.raises(InputError, match="unrecognised outcome columns"):
        load_outcomes([_write(tmp_path / "x.csv", "a,b\n1,2\n")])
    with pytest.raises(InputError, match=r"missing columns \['b\|total_cost'\]"):
        load_outcomes([_write(tmp_path / "m.csv", "prompt,a,b,a|total_cost\nq,1,0,0.1\n")])
    with pytest.raises(InputError, match="at least two"):
        load_outcomes([_write(tmp_path / "one.csv", "prompt,a,a|total_cost\nq,1,0.1\n")])
    with pytest.raises(InputError, match="outside"):
        load_outcomes([_write(tmp_path / "r.csv", "prompt,a,b,a|total_cost,b|total_cost\nq,2,0,1,1\n")])


def test_blank_scores_are_skipped_and_models_must_match(tmp_path: Path) -> None:
    head = "prompt,a,b,a|total_cost,b|total_cost\n"
    good = _write(tmp_path / "g.csv", head + "q1,1,0,0.1,1\nq2,,1,0.1,1\nq3,0,1,0.1,1\n")
    data = load_outcomes([good])
    assert data.n == 2 and data.skipped == 1
    other = _write(tmp_path / "o.csv", "prompt,a,c,a|total_cost,c|total_cost\nq,1,0,0.1,1\n")
    with pytest.raises(InputError, match="same models"):
        load_outcomes([good, other])
    with pytest.raises(InputError, match="only in train: \\['b'\\]"):
        same_models(data, load_outcomes([other]))
