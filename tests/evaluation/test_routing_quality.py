"""Issue 15: generalised gap metrics by hand, lexical features, the new replay routers, and that training
never reads evaluation rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tierwise.evaluation.baselines import LearnedReplay, OracleReplay, PolicyReplay
from tierwise.evaluation.datasets import load_outcomes
from tierwise.evaluation.metrics import Point, gap_metrics
from tierwise.evaluation.replay import replay
from tierwise.routing.features import DEFAULT_FEATURES, embed, layout, lexical, question_structure
from tierwise.routing.outcomes import Outcomes


def test_gap_metrics_by_hand() -> None:
    # Cheapest model (1, .5), best (3, .9); the router adds (2, .85). On the axis (cost − 1) / 2 the hull
    # runs (0, .5) → (.5, .85) → flat to (1, .85): area .3375 + .425 = .7625, PGR (.7625 − .5) / .4.
    value, c50, c80 = gap_metrics([Point(2, 0.85)], Point(1, 0.5), Point(3, 0.9))
    assert value == pytest.approx(0.65625)
    # PGR .5 = quality .7, reached between cost 1 and 2: 1 + .2/.35 → 1.5714 of 3 = 52.38%.
    assert c50 == pytest.approx(100 * (1 + 0.2 / 0.35) / 3)
    assert c80 == pytest.approx(100 * (1 + 0.32 / 0.35) / 3)
    # The best model alone: the straight line between the two models, PGR .5 on average.
    value, _, _ = gap_metrics([Point(3, 0.9)], Point(1, 0.5), Point(3, 0.9))
    assert value == pytest.approx(0.5)


def test_lexical_features_count_what_they_say() -> None:
    text = "Statement 1 | Which is NOT prime?\nA. 4\nB. 15\nC. none\nD. $x$"
    row = lexical([text])[0]
    assert row.shape == (15,)
    assert row[5] == 1  # one negation
    assert row[7] == 2  # the longest number has two digits
    assert row[8] == 1  # one question mark
    assert row[12] == 2  # two options hold numbers
    assert row[13] == 1 and row[14] == 1  # a statement pair, markup
    assert lexical([]).shape == (0, 15)


def test_question_structure_counts_what_it_says() -> None:
    text = (
        "Calculate the speed, in m/s, of a ball dropped from 20 m. Which of the following is most likely?\n"
        "A. 10 m/s\nB. 20 m/s\nC. I and II only\nD. all of the above"
    )
    row = question_structure([text])[0]
    assert row.shape == (36,)
    assert row[4] == pytest.approx(0.5)  # two of four options are numbers with a unit
    assert row[5] == 1  # an "I and II only" combination
    assert row[7] == 1 and row[9] == 1  # "which of the following", "all of the above"
    assert row[8] == 2  # judgement words: "most", "likely"
    assert row[13] == 1  # the stem ends in a question
    assert row[15] == 1  # one computation verb
    plain = question_structure(["Name a colour."])[0]
    assert plain[5] == plain[7] == plain[15] == 0
    assert question_structure([]).shape == (0, 36)
    # lex2 is lex followed by these, so a router reads both
    both = embed([text], "lex2", cache=False)[0]
    np.testing.assert_allclose(both, np.concatenate([lexical([text])[0], row]))


def test_default_features_are_static_plus_lexical(tmp_path: Path) -> None:
    assert DEFAULT_FEATURES == "static+lex2"
    assert layout(DEFAULT_FEATURES) == {"static": (0, 64), "lex2": (64, 115)}
    texts = ["What is 2 + 2?", "Name a colour."]
    cached, direct = embed(texts, DEFAULT_FEATURES), embed(texts, DEFAULT_FEATURES, cache=False)
    np.testing.assert_allclose(cached, direct, atol=1e-6)  # training and live routing see the same


def _toy(n: int = 60, seed: int = 0) -> Outcomes:
    rng = np.random.default_rng(seed)
    prompts = tuple(
        f"question {i}: " + ("which is NOT " if i % 3 == 0 else "what is ") + str(i) for i in range(n)
    )
    hard = np.array([i % 3 == 0 for i in range(n)])
    scores = np.stack([np.where(hard, 0.0, 1.0), np.ones(n)], axis=1)
    scores[rng.random(n) < 0.1, 0] = 1.0
    costs = np.tile([0.0, 1.0], (n, 1))
    return Outcomes(
        prompts,
        ("weak", "strong"),
        scores,
        costs,
        ("g",) * n,
        cost_unit="strong_share",
        meta={"strong": "strong"},
    )


def test_training_never_reads_evaluation_labels() -> None:
    data = _toy(90)
    train, test = data.subset(np.arange(60)), data.subset(np.arange(60, 90))
    garbled = Outcomes(
        test.prompts,
        test.models,
        np.random.default_rng(7).integers(0, 2, test.scores.shape).astype(float),
        test.costs,
        test.groups,
        cost_unit=test.cost_unit,
        meta=test.meta,
    )
    fitted = []
    for evaluation in (test, garbled):
        router = LearnedReplay(seed=0)
        replay(router, train, evaluation)
        assert router.model is not None
        fitted.append(router.model)
    a, b = fitted
    assert a.selection == b.selection and a.lam == b.lam
    for p, q in zip(a.predictors, b.predictors, strict=True):
        assert p.label == q.label
        for key in p.arrays:
            np.testing.assert_array_equal(p.arrays[key], q.arrays[key])
    # ... and the router's choices on the evaluation prompts are the same too.
    np.testing.assert_array_equal(a.predict(a.features(test.prompts)), b.predict(b.features(test.prompts)))


def test_lexical_router_learns_which_prompts_need_the_strong_model() -> None:
    data = _toy(90)
    result = replay(LearnedReplay(seed=0), data.subset(np.arange(60)), data.subset(np.arange(60, 90)))
    assert result.apgr is not None and result.apgr > 0.8  # "NOT" questions are the hard ones


def test_policy_is_the_single_model_hull_and_oracle_tops_it(outcomes_dir: Path) -> None:
    data = load_outcomes([outcomes_dir / "routerbench" / "mbpp_train.csv"])
    train, test = data.subset(np.arange(200)), data.subset(np.arange(200, data.n))
    policy = replay(PolicyReplay(), train, test)
    assert policy.aiq == pytest.approx(policy.single_hull_aiq)
    oracle = replay(OracleReplay(), train, test)
    assert oracle.aiq > policy.aiq
    assert oracle.fit_seconds >= 0 and oracle.seconds >= oracle.fit_seconds


def test_embedding_reports_progress_for_cache_misses_only() -> None:
    from tierwise.routing.features import reporting

    seen: list[tuple[str, int, int]] = []
    texts = [f"progress text {i}" for i in range(3)]
    with reporting(lambda *args: seen.append(args)):
        embed(texts, "static")
        embed(texts, "static")  # all cached now: nothing to report
    assert seen == [("static", 3, 3)]
