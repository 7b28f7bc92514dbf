"""Metrics on hand-made cases with known answers, and RouteLLM's published APGR references on MMLU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tierwise.errors import InputError
from tierwise.evaluation.datasets import load_outcomes
from tierwise.evaluation.metrics import (
    Point,
    aiq,
    apgr,
    apgr_of_scores,
    best_single,
    cpt,
    hull,
    oracle_choice,
    oracle_strong_score,
    pgr,
    quality_at,
    random_strong_score,
    routellm_curve,
)
from tierwise.routing.outcomes import Outcomes


def _pts(*xy: tuple[float, float]) -> list[Point]:
    return [Point(c, q) for c, q in xy]


def test_hull_drops_points_below_and_after_the_best() -> None:
    points = _pts((1, 0.5), (2, 0.55), (3, 0.8), (4, 0.7), (5, 0.8), (2, 0.4))
    h = hull(points)
    # (2, 0.55) lies under the chord from (1, .5) to (3, .8); (4, .7) and (5, .8) add nothing.
    assert h.tolist() == [[1, 0.5], [3, 0.8]]


def test_hull_keeps_concave_points_and_best_of_equal_cost() -> None:
    h = hull(_pts((0, 0.2), (1, 0.7), (1, 0.6), (3, 0.9)))
    assert h.tolist() == [[0, 0.2], [1, 0.7], [3, 0.9]]


def test_aiq_of_one_flat_point_is_its_quality_share_of_the_axis() -> None:
    # A router with one configuration at cost 2 and quality .8, axis to cost 4: area (4-2)*.8 / 4.
    assert aiq(_pts((2, 0.8)), 4) == pytest.approx(0.4)


def test_aiq_trapezoid_and_flat_extension() -> None:
    # Hull (0, .5) → (1, .9), then flat to 2: area .7 + .9 = 1.6, over 2.
    assert aiq(_pts((0, 0.5), (1, 0.9), (2, 0.85)), 2) == pytest.approx(0.8)


def test_aiq_cuts_a_frontier_that_runs_past_the_axis() -> None:
    # (0, 0) → (2, 1) cut at 1 → quality .5 there: area .25 over 1.
    assert aiq(_pts((0, 0.0), (2, 1.0)), 1) == pytest.approx(0.25)
    with pytest.raises(InputError):
        aiq(_pts((0, 0.0)), 0)


def test_pgr_apgr_cpt_on_a_hand_curve() -> None:
    # weak .6, strong .8; curve at shares 0, .5, 1 = .6, .8, .8 → PGR 0, 1, 1 → APGR .25 + .5 = .75
    curve = _pts((0, 0.6), (0.5, 0.8), (1, 0.8))
    assert pgr(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert apgr(curve, 0.6, 0.8) == pytest.approx(0.75)
    assert cpt(curve, 0.5, 0.6, 0.8) == pytest.approx(25.0)
    assert cpt(curve, 0.8, 0.6, 0.8) == pytest.approx(40.0)
    assert cpt(_pts((0, 0.6), (1, 0.7)), 0.8, 0.6, 0.8) is None


def test_routellm_curve_sweeps_quantile_thresholds_to_both_ends() -> None:
    score = np.arange(10, dtype=float)
    weak = np.zeros(10)
    strong = np.ones(10)
    curve = routellm_curve(score, weak, strong)
    shares = [p.cost for p in curve]
    assert shares[0] == 1.0 and shares[-1] == 0.0
    assert [p.quality for p in curve] == shares  # strong always right, weak never


def _tiny() -> Outcomes:
    scores = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], dtype=float)
    costs = np.array([[1, 10], [1, 10], [1, 10], [1, 10]], dtype=float)
    return Outcomes(("a", "b", "c", "d"), ("cheap", "big"), scores, costs, ("g",) * 4)


def test_oracle_takes_the_cheapest_correct_model() -> None:
    data = _tiny()
    assert oracle_choice(data).tolist() == [0, 1, 0, 0]
    assert oracle_strong_score(data).tolist() == [0, 1, 0, 0]
    assert best_single(data).label == "cheap"  # .5 vs .5: the cheaper wins the tie


def test_quality_at_uses_configurations_actually_run() -> None:
    points = _pts((1, 0.5), (3, 0.9), (2, 0.7))
    assert quality_at(points, 2.5) == Point(2, 0.7)
    assert quality_at(points, 0.5) is None


@pytest.fixture(scope="module")
def mmlu(outcomes_dir: Path) -> Outcomes:
    return load_outcomes([outcomes_dir / "routellm" / "mmlu"])


def test_apgr_matches_routellm_references_on_mmlu(mmlu: Outcomes) -> None:
    """The README's figures: random ≈ 0.49, oracle ≈ 1.11."""
    assert apgr_of_scores(mmlu, oracle_strong_score(mmlu)) == pytest.approx(1.11, abs=0.01)
    random = [apgr_of_scores(mmlu, random_strong_score(mmlu.n, seed)) for seed in range(10)]
    assert np.mean(random) == pytest.approx(0.49, abs=0.02)
    assert max(random) - min(random) < 0.06


def test_reliability_bins_and_ece_by_hand() -> None:
    from tierwise.evaluation.metrics import reliability

    # Bin 0.0-0.1: predicted 0.05, observed 0; bin 0.8-0.9: predicted 0.85 (two rows), observed 0.5.
    got = reliability(np.array([0.05, 0.85, 0.85]), np.array([0.0, 1.0, 0.0]), bins=10)
    assert got["count"] == [1, 0, 0, 0, 0, 0, 0, 0, 2, 0]
    assert got["predicted"][0] == 0.05 and got["observed"][8] == 0.5 and got["predicted"][1] is None
    assert got["ece"] == pytest.approx((1 * 0.05 + 2 * 0.35) / 3)
