"""The learned router against the policy on the ledger's own shadow records: the last step of the loop.

Each shadow row holds what the policy did (the routed model, scored and priced) and what the large model
did. The learned router is replayed on the same rows: fitted on other folds of them (``model=None``) or
a trained router file. Where it picks a model the row scored, the recorded score and cost count; where it
picks one the row never ran (mini on a nano-routed row), its own predicted quality and the model's mean
cost stand in, and the share of such rows is reported as ``estimated``, never hidden.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from tierwise.errors import InputError
from tierwise.evaluation.metrics import Point, aiq, quality_at, reliability
from tierwise.evaluation.replay import BUDGET_SHARE, ReplayResult
from tierwise.routing.features import DEFAULT_FEATURES, embed
from tierwise.routing.learned import LAMBDAS, THRESHOLDS, LearnedModel, choose_cheapest
from tierwise.routing.outcomes import Outcomes, fold_indices

FOLDS = 5


def ledger_replay(
    data: Outcomes,
    *,
    model: LearnedModel | None = None,
    embedder: str = DEFAULT_FEATURES,
    seed: int = 0,
) -> ReplayResult:
    """Policy (as recorded), the large model alone and the learned router, on the same ledger rows."""
    started = time.perf_counter()
    if model is not None and set(model.models) != set(data.models):
        raise InputError(
            f"the router file was trained on {list(model.models)}, the ledger rows name {list(data.models)}: "
            "train it on these models (`tierwise eval train --from-ledger`) or omit --router-file"
        )
    if model is not None:
        data = data.select_models(model.models)
        q = model.predict(model.features(list(data.prompts)))
        picks, split, n_train = (
            model.choose(q),
            f"router file trained on {model.n_train} prompts",
            model.n_train,
        )
        threshold_rule = model.threshold is not None
    else:
        q, picks, threshold_rule = _out_of_fold(data, embedder, seed)
        split, n_train = f"{FOLDS}-fold cross-validation over the ledger rows (seed {seed})", data.n
    fitted = time.perf_counter()
    mask, rows = data.mask, np.arange(data.n)
    costs = data.mean_cost()
    large = int(np.argmax(costs))
    routed = np.argmax(
        np.where(mask, -costs[None, :], -np.inf), axis=1
    )  # cheapest scored model: the policy's

    def point(pick: np.ndarray, label: str) -> Point:
        scored = mask[rows, pick]
        quality = np.where(scored, data.scores[rows, pick], q[rows, pick])
        cost = np.where(scored, data.costs[rows, pick], costs[pick])
        return Point(float(cost.mean()), float(quality.mean()), label)

    if threshold_rule:
        sweep = [point(choose_cheapest(q, costs, float(t)), f"τ={t:.2f}") for t in THRESHOLDS]
    else:
        top = float(costs.max()) or 1.0
        sweep = [
            point(np.argmax(q - (lam + 1e-9) * costs / top, axis=1), f"λ={lam:.4g}")
            for lam in LAMBDAS
            if not np.isinf(lam)
        ]
    policy = Point(float(data.costs[rows, routed].mean()), float(data.scores[rows, routed].mean()), "policy")
    alone = Point(float(data.costs[:, large].mean()), float(data.scores[:, large].mean()), data.models[large])
    learned = point(picks, "learned")
    best = np.where(mask, data.scores, -np.inf).max(axis=1)
    cheapest_best = np.argmax(np.where(mask & (data.scores >= best[:, None]), -data.costs, -np.inf), axis=1)
    oracle = Point(float(data.costs[rows, cheapest_best].mean()), float(best.mean()), "oracle (scored rows)")
    singles = [policy, alone]
    result = ReplayResult(
        router="learned",
        models=data.models,
        cost_unit=data.cost_unit,
        n=data.n,
        n_train=n_train,
        split=split,
        points=sweep,
        singles=singles,
        oracle=oracle,
        best_single=alone,
        max_cost=alone.cost,
        aiq=aiq(sweep, alone.cost),
        single_hull_aiq=aiq(singles, alone.cost),
        budget_point=quality_at(sweep, BUDGET_SHARE * alone.cost),
        skipped=data.skipped,
    )
    result.extra["ledger"] = {
        "policy": _summary(policy, routed, data.models),
        "learned": {
            **_summary(learned, picks, data.models),
            "estimated_share": round(float((~mask[rows, picks]).mean()), 6),
            "quality_on_scored_rows": _scored_quality(data, picks),
        },
        "large": {"quality": round(alone.quality, 6), "cost": round(alone.cost, 9)},
        "rule": "threshold" if threshold_rule else "lambda",
    }
    result.extra["reliability"] = reliability(q[mask], data.scores[mask])
    result.seconds = time.perf_counter() - started
    result.fit_seconds = fitted - started
    return result


def _out_of_fold(data: Outcomes, embedder: str, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Predictions and picks for every row from a router fitted on the other folds (each its own τ/λ)."""
    x = embed(list(data.prompts), embedder)
    k = max(2, min(FOLDS, data.n // 10))
    q = np.zeros(data.scores.shape)
    picks = np.zeros(data.n, dtype=np.int64)
    threshold_rule = False
    for train_idx, test_idx in fold_indices(data, k, seed=seed):
        train = data.subset(train_idx)
        if train.observed is not None and not train.partial:
            train = replace(train, observed=None)
        fold = LearnedModel.fit(train, embedder=embedder, seed=seed, features=x[train_idx])
        q[test_idx] = fold.predict(x[test_idx])
        picks[test_idx] = fold.choose(q[test_idx])
        threshold_rule = threshold_rule or fold.threshold is not None
    return q, picks, threshold_rule


def _summary(p: Point, picks: np.ndarray, models: tuple[str, ...]) -> dict[str, object]:
    share = np.bincount(picks, minlength=len(models)) / max(len(picks), 1)
    return {
        "quality": round(p.quality, 6),
        "cost": round(p.cost, 9),
        "share": {m: round(float(s), 4) for m, s in zip(models, share, strict=True)},
    }


def _scored_quality(data: Outcomes, picks: np.ndarray) -> float | None:
    rows = np.arange(data.n)
    scored = data.mask[rows, picks]
    return round(float(data.scores[rows, picks][scored].mean()), 6) if scored.any() else None
