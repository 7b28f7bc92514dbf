"""Cascade routing: cost accounting by hand, training never reads evaluation rows, decisions read only the
answers a row paid for."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tierwise.errors import InputError
from tierwise.evaluation.baselines import CascadeRoutingReplay
from tierwise.evaluation.datasets import data_dir, load_outcomes
from tierwise.routing.cascade_fit import answer_codes
from tierwise.routing.cascade_routing import (
    RoutingPlan,
    Signals,
    fit_risk,
    risk_features,
    to_route_plan,
    vote,
)
from tierwise.routing.outcomes import Outcomes


def _tiny() -> tuple[Outcomes, Signals]:
    """Two cheap models (a, b) and a large one (c); b and a agree on rows 0 and 2 only."""
    answers = [("A", "A", "A"), ("A", "B", "C"), ("D", "D", "B"), ("C", "A", "A")]
    scores = np.array([[1, 1, 1], [0, 0, 1], [0, 0, 1], [0, 1, 1]], dtype=float)
    costs = np.array([[1, 2, 10], [1, 2, 20], [2, 3, 30], [1, 1, 40]], dtype=float)
    data = Outcomes(
        prompts=tuple(f"question {i}" for i in range(4)),
        models=("a", "b", "c"),
        scores=scores,
        costs=costs,
        groups=("g",) * 4,
        responses=tuple(tuple(f"['{x}']" for x in row) for row in answers),
    )
    q = np.tile([0.6, 0.8, 0.95], (4, 1))  # the prompt router trusts b over a
    return data, Signals(answer_codes(data), q, np.zeros((4, 1)))


def _escalate_on_disagreement() -> dict[str, np.ndarray]:
    """Risk model arrays for ``agree`` features of two cheap models: columns = one-hot patterns 0, 1, 2
    (3, everyone agrees, is the baseline), vote share, distinct answers / 2. Right when they agree."""
    return {
        "mean": np.zeros(5),
        "scale": np.ones(5),
        "coef": np.array([0.0, 0.0, 0.0, 0.0, -20.0]),  # distinct = 1 (disagree) → logit −5
        "intercept": np.array(15.0),  # distinct = 0.5 (agree) → logit +5
    }


def test_vote_weights_by_predicted_quality_and_returns_the_best_agreeing_model() -> None:
    _, s = _tiny()
    pick, bits, share = vote(s.codes[:, :2], s.q[:, :2])
    np.testing.assert_array_equal(pick, [1, 1, 1, 1])  # on disagreement b outweighs a; on agreement b
    np.testing.assert_array_equal(bits, [3, 2, 3, 2])
    assert share[0] == pytest.approx(1.0) and 0.5 < share[1] < 1.0


def test_replayed_row_pays_every_cheap_answer_plus_the_escalation() -> None:
    data, s = _tiny()
    plan = RoutingPlan((0, 1), 2, "agree", "risk", 0.5, _escalate_on_disagreement())
    route = to_route_plan(plan, s, data.models)
    # Rows 1 and 3 disagree → escalated to c; rows 0 and 2 agree → b's answer, no c.
    np.testing.assert_array_equal(route.answer, [1, 2, 1, 2])
    np.testing.assert_array_equal(route.paid, [[1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]])
    # Cost by hand: (1+2) + (1+2+20) + (2+3) + (1+1+40) = 73 over 4 rows.
    assert route.cost(data) == pytest.approx(73 / 4)
    # Quality: b right on row 0, c right on rows 1 and 3, b wrong on row 2.
    assert route.quality(data) == pytest.approx(3 / 4)
    # Never escalating: the cheap answers are still paid for on every row.
    never = to_route_plan(replace(plan, escalate=None), s, data.models)
    assert never.cost(data) == pytest.approx((3 + 3 + 5 + 2) / 4)
    np.testing.assert_array_equal(never.answer, [1, 1, 1, 1])
    # Row 3's prompt makes b trusted enough to answer alone: it buys b only, and b's lone answer is
    # judged by its own risk model (here: confident, so no escalation).
    q = s.q.copy()
    q[3, 1] = 0.9
    trusted = {
        "mean": np.zeros(3),
        "scale": np.ones(3),
        "coef": np.zeros(3),
        "intercept": np.array(5.0),
    }
    alone = replace(plan, alone_at=0.85, risk_alone=trusted)
    route = to_route_plan(alone, replace(s, q=q), data.models)
    np.testing.assert_array_equal(route.answer, [1, 2, 1, 1])
    np.testing.assert_array_equal(route.paid, [[1, 1, 0], [1, 1, 1], [1, 1, 0], [0, 1, 0]])
    assert route.cost(data) == pytest.approx((3 + 23 + 5 + 1) / 4)
    assert route.quality(data) == pytest.approx(3 / 4)
    # The large model alone: one call per row.
    alone = to_route_plan(RoutingPlan((), 2, "", "", -np.inf), s, data.models)
    assert alone.cost(data) == pytest.approx(25.0) and alone.quality(data) == 1.0


def test_risk_features_drop_the_all_agree_pattern() -> None:
    _, s = _tiny()
    returned, x = risk_features(s, (0, 1), "agree+pred+lex")
    np.testing.assert_array_equal(returned, [1, 1, 1, 1])
    assert x.shape == (4, 3 + 2 + 2 + 1)  # patterns 0-2, share, distinct, two predictions, lex
    assert not x[[0, 2], :3].any()  # agreeing rows: no one-hot column set (the intercept carries them)


def test_risk_fit_stays_finite_on_separable_patterns() -> None:
    # A pattern that is always right in training made an unpenalised intercept run off to infinity.
    x = np.zeros((40, 3))
    x[:10, 0] = 1.0
    x[10:, 1] = 1.0
    x[:, 2] = np.where(x[:, 0] == 1, 1.0, 0.5)
    y = np.where(x[:, 0] == 1, 0.0, 1.0)
    arrays = fit_risk(x, y, 1.0)
    assert abs(float(arrays["intercept"])) < 50
    t = ((x - arrays["mean"]) / arrays["scale"]) @ arrays["coef"] + arrays["intercept"]
    p = 1 / (1 + np.exp(-t))
    assert p[:10].max() < 0.2 and p[10:].min() > 0.8


@pytest.fixture(scope="module")
def arc() -> tuple[Outcomes, Outcomes]:
    try:
        path = data_dir() / "outcomes" / "routerbench" / "arc_challenge_train.csv"
    except InputError:
        pytest.skip("the shared evaluation data is not available")
    data = load_outcomes([path]).subset(np.arange(400))
    return data.subset(np.arange(300)), data.subset(np.arange(300, 400))


def test_training_never_reads_evaluation_rows_and_decisions_read_only_paid_answers(
    arc: tuple[Outcomes, Outcomes],
) -> None:
    train, test = arc
    garbled = replace(test, scores=np.random.default_rng(3).integers(0, 2, test.scores.shape).astype(float))
    routers = [CascadeRoutingReplay(seed=0), CascadeRoutingReplay(seed=0)]
    plans = []
    for router, evaluation in zip(routers, (test, garbled), strict=True):
        router.fit(train)
        plans.append(router.plans(evaluation))
    a, b = (r.family for r in routers)
    assert a is not None and b is not None
    assert [p.label(train.models) for p in a.plans] == [p.label(train.models) for p in b.plans]
    for p, q in zip(a.plans, b.plans, strict=True):
        for key in p.risk:
            np.testing.assert_array_equal(p.risk[key], q.risk[key])
    for p, q in zip(*plans, strict=True):
        np.testing.assert_array_equal(p.answer, q.answer)
        np.testing.assert_array_equal(p.paid, q.paid)
    assert any(p.paid.sum(axis=1).max() >= 3 for p in plans[0])  # some plans buy answers and escalate
    assert any(np.isfinite(p.alone_at) for p in a.plans)  # some plans skip the second opinion
    # Decisions read the answers a row paid for only: garble every other response of every row.
    for plan, route in zip(a.plans, plans[0], strict=True):
        scrambled = replace(
            test,
            responses=tuple(
                tuple(
                    r if route.paid[i, j] and j != plan.escalate else f"['{'ABCD'[(i + j) % 4]}']"
                    for j, r in enumerate(row)
                )
                for i, row in enumerate(test.responses or ())
            ),
        )
        again = to_route_plan(plan, a.signals(scrambled), test.models)
        np.testing.assert_array_equal(again.answer, route.answer)
        np.testing.assert_array_equal(again.paid, route.paid)
        # Every row pays the best cheap answer (all of them unless it trusts that one alone), and the
        # escalation model exactly when it answers.
        if plan.cheap:
            assert route.paid[:, plan.cheap[-1]].all()
            alone = plan.alone(a.signals(test))
            assert route.paid[~alone][:, list(plan.cheap)].all()
            assert route.paid.sum(axis=1)[alone].max(initial=1) <= 2
        if plan.escalate is not None and plan.cheap:
            np.testing.assert_array_equal(route.paid[:, plan.escalate], route.answer == plan.escalate)


def test_cascade_routing_needs_recorded_responses(arc: tuple[Outcomes, Outcomes]) -> None:
    with pytest.raises(InputError, match="responses"):
        CascadeRoutingReplay().fit(replace(arc[0], responses=None))
