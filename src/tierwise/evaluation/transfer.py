"""Transfer: a learned router trained on one task and deployed on another it never saw.

What a user meets when their traffic drifts from the outcomes they trained on. Measured on the unseen task:
AIQ of the λ sweep against the single-model hull, APGR for two models, the calibration of the router's
predicted quality (ECE on the training task out of fold vs on the unseen task, and the reliability
diagram's data), and the ``[routing] learned_min_confidence`` fallback: decisions whose predicted quality
is below the floor go to the policy, which for one-kind benchmark prompts is the large model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierwise.evaluation.metrics import (
    Point,
    aiq,
    apgr,
    quality_at,
    reliability,
    routellm_curve,
    single_points,
)
from tierwise.routing.features import DEFAULT_FEATURES
from tierwise.routing.learned import LAMBDAS, LearnedModel
from tierwise.routing.outcomes import Outcomes

FLOORS: tuple[float | None, ...] = (None, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Fallback:
    """The router with one confidence floor, at its default λ. ``gain``: its quality minus the best the
    router without a floor reaches at no more cost (positive: the fallback beats simply lowering λ)."""

    floor: float | None
    share: float  # of decisions at the default λ that went to the policy
    quality: float
    cost: float
    gain: float


@dataclass
class TransferResult:
    source: str
    target: str
    n_train: int
    n_test: int
    models: tuple[str, ...]
    aiq: float
    hull_aiq: float
    apgr: float | None
    ece_in_task: float  # out-of-fold on the training task
    ece: float  # on the unseen task
    large: Point
    fallbacks: list[Fallback] = field(default_factory=list)
    reliability: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def transfer(
    train: Outcomes,
    test: Outcomes,
    *,
    source: str,
    target: str,
    embedder: str = DEFAULT_FEATURES,
    seed: int = 0,
    floors: Sequence[float | None] = FLOORS,
    model: LearnedModel | None = None,
) -> TransferResult:
    """Fit on ``train`` (or use ``model``), route ``test``; ``test`` must name the same models."""
    started = time.perf_counter()
    model = model or LearnedModel.fit(train, embedder=embedder, seed=seed)
    test = test.select_models(model.models)
    q = model.predict(model.features(list(test.prompts)))
    rows = np.arange(test.n)
    costs = test.mean_cost()
    large = int(np.argmax(costs))
    top = float(costs.max()) or 1.0
    singles = single_points(test)

    def picks(lam: float, floor: float | None) -> np.ndarray:
        if np.isinf(lam):
            pick = np.full(test.n, int(np.argmin(costs)))
        else:
            pick = np.argmax(q - (lam + 1e-9) * costs / top, axis=1)
        if floor is not None:
            pick = np.where(q[rows, pick] < floor, large, pick)
        return pick

    def point(pick: np.ndarray) -> Point:
        return Point(float(test.costs[rows, pick].mean()), float(test.scores[rows, pick].mean()))

    two = len(test.models) == 2
    weak = 1 - large
    qw, qs = float(test.mean_quality()[weak]), float(test.mean_quality()[large])
    plain = [point(picks(float(lam), None)) for lam in LAMBDAS]
    fallbacks = []
    for floor in floors:
        share = 0.0 if floor is None else float((q[rows, picks(model.lam, None)] < floor).mean())
        p = point(picks(model.lam, floor))
        reached = quality_at(plain, p.cost * (1 + 1e-9))
        fallbacks.append(
            Fallback(floor, share, p.quality, p.cost, p.quality - (reached.quality if reached else 0.0))
        )
    routellm = None
    if two and qs != qw:
        routellm = apgr(
            routellm_curve(q[:, large] - q[:, weak], test.scores[:, weak], test.scores[:, large]), qw, qs
        )
    train_scores = train.select_models(model.models).scores if train.n == len(model.calib_q) else None
    in_task = reliability(model.calib_q, train_scores)["ece"] if train_scores is not None else float("nan")
    diagram = reliability(q, test.scores)
    return TransferResult(
        source=source,
        target=target,
        n_train=model.n_train,
        n_test=test.n,
        models=test.models,
        aiq=aiq(plain, top),
        hull_aiq=aiq(singles, top),
        apgr=routellm,
        ece_in_task=float(in_task),
        ece=float(diagram["ece"]),
        large=singles[large],
        fallbacks=fallbacks,
        reliability=diagram,
        seconds=time.perf_counter() - started,
    )
