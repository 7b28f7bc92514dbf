"""Offline replay: fit a router on training outcomes, sweep its cost parameter on evaluation outcomes.

The result holds the router's (cost, quality) points, its AIQ against the single models' hull (cost axis
up to the costliest single model), the oracle and best-single references and, for two-model data,
RouteLLM's APGR and CPT(50%)/CPT(80%). ``tierwise eval replay --json`` prints ``ReplayResult.to_json()``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tierwise.evaluation.baselines import ReplayRouter, make_router
from tierwise.evaluation.datasets import load_outcomes, with_strong_share
from tierwise.evaluation.metrics import (
    Point,
    aiq,
    apgr,
    best_single,
    costliest_single,
    cpt,
    hull,
    oracle_point,
    quality_at,
    reliability,
    routellm_curve,
    single_points,
)
from tierwise.routing.features import DEFAULT_FEATURES
from tierwise.routing.outcomes import Outcomes, RoutePlan, same_models

BUDGET_SHARE = 0.25  # "quality at <= 25% of the strongest model's cost"


@dataclass
class ReplayResult:
    router: str
    models: tuple[str, ...]
    cost_unit: str
    n: int
    n_train: int
    split: str
    points: list[Point]
    singles: list[Point]
    oracle: Point
    best_single: Point
    max_cost: float
    aiq: float
    single_hull_aiq: float
    apgr: float | None = None
    cpt50: float | None = None
    cpt80: float | None = None
    budget_point: Point | None = None  # best router point at <= BUDGET_SHARE of the strongest's cost
    skipped: int = 0
    excluded: int = 0
    seconds: float = 0.0
    fit_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frontier(self) -> list[Point]:
        return [Point(float(c), float(q)) for c, q in hull(self.points)]

    @property
    def budget_pct_of_best(self) -> float | None:
        if self.budget_point is None or self.best_single.quality == 0:
            return None
        return 100.0 * self.budget_point.quality / self.best_single.quality

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "router": self.router,
            "n": self.n,
            "n_train": self.n_train,
            "split": self.split,
            "models": list(self.models),
            "cost_unit": self.cost_unit,
            "aiq": round(self.aiq, 6),
            "single_hull_aiq": round(self.single_hull_aiq, 6),
            "aiq_gain": round(self.aiq - self.single_hull_aiq, 6),
            "max_cost": self.max_cost,
            "oracle": _qc(self.oracle),
            "best_single": {"model": self.best_single.label, **_qc(self.best_single)},
            "single_models": [{"model": p.label, **_qc(p)} for p in self.singles],
            f"quality_at_{round(BUDGET_SHARE * 100)}pct_cost": None
            if self.budget_point is None
            else {**_qc(self.budget_point), "pct_of_best_single": round(self.budget_pct_of_best or 0.0, 3)},
            "frontier": [_qc(p) for p in self.frontier],
            "points": [{**_qc(p), "label": p.label} for p in self.points],
            "skipped_blank_rows": self.skipped,
            "excluded_rows": self.excluded,
            "seconds": round(self.seconds, 3),
            "fit_seconds": round(self.fit_seconds, 3),
        }
        if len(self.models) == 2:
            out["apgr"] = None if self.apgr is None else round(self.apgr, 6)
            out["cpt50"] = None if self.cpt50 is None else round(self.cpt50, 3)
            out["cpt80"] = None if self.cpt80 is None else round(self.cpt80, 3)
        out.update(self.extra)
        return out


def _qc(p: Point) -> dict[str, float]:
    return {"quality": round(p.quality, 6), "cost": round(p.cost, 9)}


def frontier_points(plans: Sequence[RoutePlan], data: Outcomes) -> list[Point]:
    return [Point(p.cost(data), p.quality(data), p.label) for p in plans]


def replay(router: ReplayRouter, train: Outcomes, test: Outcomes, *, split: str = "") -> ReplayResult:
    """Fit ``router`` on ``train`` and measure it on ``test`` (which must name the same models)."""
    same_models(train, test)
    train = train.select_models(test.models)
    started = time.perf_counter()
    router.fit(train)
    fitted = time.perf_counter()
    plans = router.plans(test)
    points = frontier_points(plans, test)
    max_cost = costliest_single(test).cost
    singles = single_points(test)
    strongest = best_single(test)
    result = ReplayResult(
        router=router.name,
        models=test.models,
        cost_unit=test.cost_unit,
        n=test.n,
        n_train=train.n,
        split=split,
        points=points,
        singles=singles,
        oracle=oracle_point(test),
        best_single=strongest,
        max_cost=max_cost,
        aiq=aiq(points, max_cost),
        single_hull_aiq=aiq(singles, max_cost),
        budget_point=quality_at(points, BUDGET_SHARE * strongest.cost),
        skipped=test.skipped + train.skipped,
        excluded=test.excluded + train.excluded,
    )
    if len(test.models) == 2:
        _two_model_metrics(result, router, plans, test)
    predictions = getattr(router, "predictions", None)
    if predictions is not None:  # routers that predict quality: how far to trust it (reliability diagram)
        result.extra["reliability"] = reliability(predictions(test), test.scores)
    result.seconds = time.perf_counter() - started
    result.fit_seconds = fitted - started
    return result


def _two_model_metrics(
    result: ReplayResult, router: ReplayRouter, plans: list[RoutePlan], test: Outcomes
) -> None:
    """APGR / CPT on the share of strong calls: RouteLLM's 10 quantile thresholds of the router's score
    when it has one, else the router's own sweep (a cascade's share of calls that reached the strong model).
    """
    s, w = test.strong_weak()
    q = test.mean_quality()
    if q[s] == q[w]:
        return
    score = router.strong_score(test)
    if score is not None:
        curve = routellm_curve(score, test.scores[:, w], test.scores[:, s])
    else:
        curve = [Point(float(p.paid[:, s].mean()), p.quality(test)) for p in plans]
        if max(c.cost for c in curve) - min(c.cost for c in curve) <= 0:
            return
    result.apgr = apgr(curve, float(q[w]), float(q[s]))
    cpt50 = cpt(curve, 0.5, float(q[w]), float(q[s]))
    cpt80 = cpt(curve, 0.8, float(q[w]), float(q[s]))
    result.cpt50, result.cpt80 = cpt50, cpt80


def split_outcomes(
    data: Outcomes, *, seed: int = 0, test_fraction: float = 0.3
) -> tuple[Outcomes, Outcomes, str]:
    """A held-out split when no training files are given: by subject for MMLU, by prompt otherwise."""
    by_group = data.cost_unit == "strong_share" and len(set(data.groups)) >= 4
    train, test = data.train_test_split(test_fraction, seed=seed, by_group=by_group)
    if by_group:
        held = sorted(set(test.groups))
        return train, test, f"held out {len(held)} of {len(set(data.groups))} subjects (seed {seed})"
    return train, test, f"held out {test.n} of {data.n} prompts (seed {seed})"


def run_replay(
    outcomes: Sequence[str | Path],
    *,
    train: Sequence[str | Path] | None = None,
    router: str = "learned",
    seed: int = 0,
    embedder: str = DEFAULT_FEATURES,
) -> ReplayResult:
    """What ``tierwise eval replay`` runs: load, split or pair train/eval files, fit, sweep, measure."""
    replay_router = make_router(router, seed, embedder)  # fail on a bad name before loading anything
    if train:
        train_data = load_outcomes(train)
        test_data = load_outcomes(outcomes)
        same_models(train_data, test_data)
        if test_data.cost_unit == "strong_share" and "strong" in train_data.meta:
            # The strong model is the one training called strong, even if held-out subjects disagree.
            test_data = with_strong_share(test_data, train_data.meta["strong"])
        split = f"trained on {len(train_data.sources)} file(s), evaluated on {len(test_data.sources)}"
    else:
        data = load_outcomes(outcomes)
        train_data, test_data, split = split_outcomes(data, seed=seed)
    return replay(replay_router, train_data, test_data, split=split)
