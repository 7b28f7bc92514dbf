"""Choosing the learned router's quality predictors by cross-validation inside the training data.

Each candidate predictor (``predictors.candidates``) is fit on training folds and scored on the held-out
fold by how well its predictions *route* (AIQ of the λ sweep; RouteLLM's APGR for two models; the Brier
score on partial ledger rows, where no routing replay is possible); the router predicts with the mean of
the best two. Nothing here reads evaluation rows: the caller passes training outcomes only.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np

from tierwise.routing.frontier import Point, aiq, apgr, routellm_curve
from tierwise.routing.outcomes import Outcomes, fold_indices
from tierwise.routing.predictors import Layout, Predictor, candidates

# λ is in quality per cost of the costliest model; this grid spans "cost is free" to "only cost matters".
LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 121), [np.inf]])


@dataclass
class Selection:
    """The outcome of selection: the chosen predictors fit on every training row, each candidate's CV
    score, and the chosen mean's out-of-fold predictions (the router's calibration data)."""

    predictors: tuple[Predictor, ...]
    scores: dict[str, float]
    oof: np.ndarray


def select_predictors(
    data: Outcomes,
    x: np.ndarray,
    view: Layout,
    choices: Sequence[Predictor] | None,
    folds: int,
    seed: int,
) -> Selection:
    """Cross-validate the candidates on ``data`` (features ``x``), keep the best two, fit them on all of it.

    Folds keep groups whole when there are at least ``folds`` groups (MMLU subjects), so the choice
    rewards predictors that carry over to unseen subjects.
    """
    costs = data.mean_cost()
    options = [o.copy() for o in choices] if choices else candidates(view)
    mask = data.observed if data.partial else None
    if mask is not None:
        # Relative targets compare a row's models with each other: partial rows have no such row mean.
        options = [o for o in options if not o.relative] or [Predictor("logreg", {"C": 0.1})]
    by_group = len(set(data.groups)) >= folds
    k = max(2, min(folds, data.n // 10))
    # Which subjects share a fold moves held-out scores a lot, so grouped data gets two partitions.
    partitions = [
        fold_indices(data, k, seed=seed + r, by_group=by_group) for r in range(2 if by_group else 1)
    ]
    max_cost = float(costs.max())
    cache: dict[tuple[str, int], np.ndarray] = {}

    def out_of_fold(single: Predictor, r: int) -> np.ndarray:
        key = (single.label, r)
        if key not in cache:
            oof = np.zeros(data.scores.shape)
            for train_idx, test_idx in partitions[r]:
                part = None if mask is None else mask[train_idx]
                p = single.copy().fit(x[train_idx], data.scores[train_idx], part)
                oof[test_idx] = p.predict(x[test_idx])
            cache[key] = oof
        return cache[key]

    def predictions(option: Predictor, r: int) -> np.ndarray:
        if option.kind != "blend":
            return out_of_fold(option, r)
        # A blend is the mean of its components: reuse their out-of-fold predictions.
        parts = [
            Predictor(
                part,
                {key: option.params[key] for key in keys if key in option.params},
                _view(option, part),
                option.layout,
            )
            for part, keys in (("logreg", ("C", "rel")), ("knn", ("k",)))
        ]
        return 0.5 * (out_of_fold(parts[0], r) + out_of_fold(parts[1], r))

    def cv_score(oofs: Sequence[np.ndarray]) -> float:
        if mask is not None:  # no routing replay on cells never scored: score the predictions instead
            return float(np.mean([-_brier(q, data.scores, mask) for q in oofs]))
        return float(np.mean([selection_score(q, data, costs, max_cost) for q in oofs]))

    rounds = range(len(partitions))
    scores = [cv_score([predictions(o, r) for r in rounds]) for o in options]
    selection = {o.label: round(score, 6) for o, score in zip(options, scores, strict=True)}
    # Candidates within noise of each other swap places from one training set to the next (by MMLU
    # subject, the top few differ by ~0.01 APGR): predict with the mean of the best two. The pair's CV
    # score is recorded, not used to gate it: gating on it would be one more noisy selection.
    ranked = sorted(range(len(options)), key=lambda i: -scores[i])  # stable: earlier wins ties
    chosen = [options[i] for i in ranked[:2]]
    if len(chosen) == 2:
        pair = cv_score([np.mean([predictions(o, r) for o in chosen], axis=0) for r in rounds])
        selection[f"mean({chosen[0].label}, {chosen[1].label})"] = round(pair, 6)
    oof = np.mean([predictions(o, 0) for o in chosen], axis=0)
    fitted = tuple(o.copy().fit(x, data.scores, mask) for o in chosen)
    return Selection(fitted, selection, oof)


def one_blas_thread() -> AbstractContextManager[object]:
    """Small solves: BLAS threads only add overhead, and contend on 2 cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it, fitting is only slower
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _view(option: Predictor, component: str) -> dict[str, str]:
    view = option.views.get(component)
    return {component: view} if view else {}


def _brier(q: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> float:
    return float(((q - scores) ** 2)[mask].mean())


def selection_score(q: np.ndarray, data: Outcomes, costs: np.ndarray, max_cost: float) -> float:
    """How well predictions ``q`` route their own rows: APGR for two models, else AIQ of the λ sweep."""
    if len(data.models) == 2:
        strong, weak = data.strong_weak()
        qs = data.mean_quality()
        if qs[strong] != qs[weak]:
            curve = routellm_curve(q[:, strong] - q[:, weak], data.scores[:, weak], data.scores[:, strong])
            return apgr(curve, float(qs[weak]), float(qs[strong]))
    top = float(costs.max()) or 1.0
    rows = np.arange(data.n)
    points = []
    for lam in LAMBDAS:
        if np.isinf(lam):
            pick = np.full(len(q), int(np.argmin(costs)))
        else:
            pick = np.argmax(q - (lam + 1e-9) * costs / top, axis=1)
        points.append(Point(float(data.costs[rows, pick].mean()), float(data.scores[rows, pick].mean())))
    return aiq(points, max_cost)
