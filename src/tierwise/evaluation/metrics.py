"""Cost–quality metrics for routers: the frontier hull, RouterBench's AIQ, RouteLLM's PGR / APGR / CPT.

Definitions follow the papers' code: AIQ integrates the non-decreasing convex hull of a router's
(cost, quality) points, extended flat to the costliest single model, divided by that cost; APGR integrates
the performance gap recovered over the share of strong calls at 10 quantile thresholds (trapezoid rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tierwise.errors import InputError
from tierwise.routing.frontier import Point, aiq, apgr, cpt, hull, pgr, routellm_curve
from tierwise.routing.outcomes import Outcomes

__all__ = [
    "Point",
    "aiq",
    "apgr",
    "apgr_of_scores",
    "best_single",
    "costliest_single",
    "cpt",
    "gap_metrics",
    "hull",
    "oracle_choice",
    "oracle_point",
    "oracle_strong_score",
    "pgr",
    "point_of",
    "quality_at",
    "random_strong_score",
    "reliability",
    "routellm_curve",
    "single_points",
]


def point_of(data: Outcomes, choice: np.ndarray, label: str = "") -> Point:
    """The point of routing row ``i`` to model ``choice[i]`` (one call per prompt)."""
    rows = np.arange(data.n)
    return Point(float(data.costs[rows, choice].mean()), float(data.scores[rows, choice].mean()), label)


def single_points(data: Outcomes) -> list[Point]:
    q, c = data.mean_quality(), data.mean_cost()
    return [Point(float(c[j]), float(q[j]), m) for j, m in enumerate(data.models)]


def best_single(data: Outcomes) -> Point:
    """The single model with the best quality (the cheaper one on a tie)."""
    return max(single_points(data), key=lambda p: (p.quality, -p.cost))


def costliest_single(data: Outcomes) -> Point:
    return max(single_points(data), key=lambda p: p.cost)


def oracle_choice(data: Outcomes) -> np.ndarray:
    """Per prompt, the cheapest of the models with the best score: the unreachable upper reference."""
    best = data.scores.max(axis=1, keepdims=True)
    masked = np.where(data.scores >= best, data.costs, np.inf)
    return np.argmin(masked, axis=1)


def oracle_point(data: Outcomes) -> Point:
    return point_of(data, oracle_choice(data), "oracle")


def quality_at(points: Sequence[Point], max_cost: float) -> Point | None:
    """The best configuration a router actually ran at mean cost <= ``max_cost`` (no interpolation)."""
    within = [p for p in points if p.cost <= max_cost * (1 + 1e-9)]
    return max(within, key=lambda p: (p.quality, -p.cost)) if within else None


# ---- RouteLLM references: two models, cost = share of strong calls --------------------------------------
def oracle_strong_score(data: Outcomes) -> np.ndarray:
    """The two-model oracle: strong exactly when only the strong model is right."""
    s, w = data.strong_weak()
    return ((data.scores[:, s] > 0.5) & (data.scores[:, w] <= 0.5)).astype(np.float64)


def random_strong_score(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def apgr_of_scores(data: Outcomes, strong_score: np.ndarray, n_thresholds: int = 10) -> float:
    """APGR of a two-model router given its per-prompt preference for the strong model."""
    s, w = data.strong_weak()
    curve = routellm_curve(strong_score, data.scores[:, w], data.scores[:, s], n_thresholds)
    q = data.mean_quality()
    return apgr(curve, float(q[w]), float(q[s]))


# ---- many models: the gap between the cheapest model and the best one --------------------------------
def gap_metrics(
    points: Sequence[Point], cheap: Point, strong: Point
) -> tuple[float, float | None, float | None]:
    """APGR, CPT(50%), CPT(80%) generalised to N priced models, on the router's hull.

    The axis runs from the cheapest model's cost to the best model's; the gap from the cheapest model's
    quality to the best one's. APGR is the hull's mean PGR over that span (extended flat, cut at the best
    model's cost); CPT(x) is the smallest cost, in % of the best model's, at which the hull reaches PGR x.
    """
    if strong.cost <= cheap.cost or strong.quality == cheap.quality:
        raise InputError("gap metrics need a best model that costs more and scores better than the cheapest")
    span = strong.cost - cheap.cost
    h = hull([*points, Point(cheap.cost, cheap.quality)])  # quality at the cheapest cost: its own
    h = h[h[:, 0] >= cheap.cost]
    h = np.vstack([h[h[:, 0] <= strong.cost], [strong.cost, _at_cost(h, strong.cost)]])
    curve = [Point((c - cheap.cost) / span, q) for c, q in h]
    area = aiq(curve, 1.0)  # the hull on [0, 1], flat to 1: its mean quality
    value = (area - cheap.quality) / (strong.quality - cheap.quality)
    scale = [Point(c / strong.cost, q) for c, q in h]
    c50 = cpt(scale, 0.5, cheap.quality, strong.quality)
    c80 = cpt(scale, 0.8, cheap.quality, strong.quality)
    return value, c50, c80


def _at_cost(h: np.ndarray, cost: float) -> float:
    """The hull's quality at ``cost`` (flat past its last point)."""
    return float(np.interp(cost, h[:, 0], h[:, 1]))


def reliability(predicted: np.ndarray, actual: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """A reliability diagram's data: predicted quality in equal-width bins vs the quality observed there.

    ``ece`` is the expected calibration error (bin-weighted mean |predicted − observed|): 0 when a
    prediction of 0.8 is right 80% of the time, at every level.
    """
    p = np.clip(np.asarray(predicted, dtype=np.float64).ravel(), 0.0, 1.0)
    a = np.asarray(actual, dtype=np.float64).ravel()
    if len(p) != len(a):
        raise InputError(f"{len(p)} predictions for {len(a)} outcomes")
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    out: dict[str, Any] = {"bins": bins, "n": len(p), "predicted": [], "observed": [], "count": []}
    ece = 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        out["count"].append(n)
        out["predicted"].append(round(float(p[sel].mean()), 6) if n else None)
        out["observed"].append(round(float(a[sel].mean()), 6) if n else None)
        if n:
            ece += n * abs(float(p[sel].mean()) - float(a[sel].mean()))
    out["ece"] = round(ece / max(len(p), 1), 6)
    return out
