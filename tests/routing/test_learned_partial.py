"""The learned router on partial rows (ledger shadow checks score the routed tier and large only)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tierwise.routing.learned import LearnedModel, choose_cheapest
from tierwise.routing.outcomes import Outcomes
from tierwise.routing.predictors import Predictor

# Per topic: is nano right, is mini right (large always is).
TOPICS = {
    "how do I reset the password for my account": (1.0, 1.0),
    "please refund the order I placed last week": (0.0, 1.0),
    "someone stole my card at the station yesterday": (0.0, 0.0),
}


def _ledger_like(n: int = 90) -> Outcomes:
    """Even rows were routed to nano, odd rows to mini; every row also scores large."""
    prompts, scores, observed = [], [], []
    for i in range(n):
        topic = list(TOPICS)[i % 3]
        routed = i % 2
        seen = np.array([routed == 0, routed == 1, True])
        prompts.append(f"{topic} (ticket {i})")
        scores.append(np.where(seen, [*TOPICS[topic], 1.0], 0.0))
        observed.append(seen)
    costs = np.where(np.array(observed), [0.001, 0.005, 0.02], 0.0)
    return Outcomes(
        tuple(prompts),
        ("nano", "mini", "large"),
        np.array(scores),
        costs,
        ("support",) * n,
        observed=np.array(observed),
    )


def test_masked_means_ignore_unscored_cells() -> None:
    data = _ledger_like()
    assert data.partial
    assert np.allclose(data.mean_cost(), [0.001, 0.005, 0.02])
    assert np.allclose(data.mean_quality(), [1 / 3, 2 / 3, 1.0])
    assert data.subset([0, 1]).observed.tolist() == [[True, False, True], [False, True, True]]


def test_each_tier_learns_from_its_own_rows_and_the_cheapest_good_enough_wins(tmp_path: Path) -> None:
    data = _ledger_like()
    model = LearnedModel.fit(data, embedder="static")
    assert model.threshold is not None and 0 < model.threshold < 1
    assert not any(",rel" in label for label in model.selection)  # relative targets need full rows
    q = model.predict(model.features(list(TOPICS)))
    assert model.choose(q).tolist() == [0, 1, 2]  # password: nano; refund: mini; theft: large
    loaded = LearnedModel.load(model.save(tmp_path / "r.npz"))
    assert loaded.threshold == model.threshold
    assert loaded.choose(loaded.predict(loaded.features(list(TOPICS)))).tolist() == [0, 1, 2]


def test_unscored_cells_read_as_failures_would_send_everything_to_large() -> None:
    """What the mask is for: the same rows with missing scores taken as zeros teach nothing useful."""
    data = _ledger_like()
    naive = LearnedModel.fit(replace(data, observed=None), embedder="static")
    q = naive.predict(naive.features(list(TOPICS)))
    assert naive.choose(q).tolist() != [0, 1, 2]


def test_calibrating_a_threshold_router_meets_a_large_share() -> None:
    model = LearnedModel.fit(_ledger_like(), embedder="static")
    tau = model.calibrate(target_large_share=0.0)
    assert (model.choose(model.calib_q) != 2).all() and tau == model.threshold


def test_choose_cheapest_falls_back_to_the_best_predicted() -> None:
    q = np.array([[0.9, 0.95, 1.0], [0.2, 0.8, 0.9], [0.1, 0.3, 0.4]])
    assert choose_cheapest(q, np.array([1.0, 2.0, 3.0]), 0.7).tolist() == [0, 1, 2]
    assert choose_cheapest(q, np.array([1.0, 2.0, 3.0]), 0.95).tolist() == [1, 2, 2]


def test_relative_predictors_refuse_partial_rows() -> None:
    data = _ledger_like(12)
    with pytest.raises(Exception, match="relative targets need every model scored"):
        Predictor("logreg", {"C": 0.1, "rel": 1.0}).fit(np.ones((12, 3)), data.scores, data.observed)
