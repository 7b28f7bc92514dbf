"""Cost–quality math: points, the non-decreasing convex hull, RouterBench's AIQ, RouteLLM's APGR / CPT.

Pure numpy, in ``routing`` because the learned router selects its predictor by these metrics;
``evaluation.metrics`` re-exports them with the rest of the metrics.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierwise.errors import InputError


@dataclass(frozen=True, slots=True)
class Point:
    """Mean cost and mean quality of one router configuration over a set of prompts."""

    cost: float
    quality: float
    label: str = ""

    def to_dict(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {"quality": round(self.quality, 6), "cost": round(self.cost, 9)}
        if self.label:
            out["label"] = self.label
        return out


def hull(points: Sequence[Point] | np.ndarray) -> np.ndarray:
    """The non-decreasing upper convex hull of (cost, quality) points, as a (k, 2) array sorted by cost.

    It starts at the cheapest point (best quality among equally cheap ones) and ends at the cheapest point
    of best quality: the qualities a router reaches at each budget by mixing its configurations.
    """
    arr = as_array(points)
    if len(arr) == 0:
        raise InputError("a frontier needs at least one (cost, quality) point")
    order = np.lexsort((-arr[:, 1], arr[:, 0]))
    pts = arr[order]
    upper: list[np.ndarray] = []
    for p in pts:
        if upper and p[0] == upper[-1][0]:
            continue  # same cost, lower or equal quality (sorted): dominated
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) >= 0:
            upper.pop()
        upper.append(p)
    h = np.array(upper)
    top = int(np.argmax(h[:, 1]))  # first occurrence: the cheapest point of best quality
    return h[: top + 1]


def aiq(points: Sequence[Point] | np.ndarray, max_cost: float) -> float:
    """RouterBench's Average Improvement in Quality: hull area on [its first cost, max_cost] / max_cost.

    The hull is cut at ``max_cost`` (a router may not buy quality beyond the costliest single model) and
    extended flat to it; cost below the router's cheapest point contributes nothing, as in RouterBench.
    """
    if max_cost <= 0:
        raise InputError(f"AIQ needs a positive cost axis, got max_cost={max_cost}")
    h = _clip(hull(points), max_cost)
    if len(h) == 0:
        return 0.0
    if h[-1, 0] < max_cost:
        h = np.vstack([h, [max_cost, h[-1, 1]]])
    return float(np.trapezoid(h[:, 1], h[:, 0]) / max_cost)


# ---- RouteLLM: two models, cost = share of strong calls ----------------------------------------------------
def routellm_curve(
    strong_score: np.ndarray, weak_scores: np.ndarray, strong_scores: np.ndarray, n_thresholds: int = 10
) -> list[Point]:
    """(share of strong calls, quality) at the router-score quantile thresholds, as RouteLLM sweeps them.

    Thresholds are the n+1 quantile edges of the router's scores, duplicates kept; a prompt goes to the
    strong model when its score is >= the threshold (> for the last one, so the curve reaches 0%).
    """
    score = np.asarray(strong_score, dtype=np.float64)
    if score.shape != weak_scores.shape or score.shape != strong_scores.shape:
        raise InputError("router scores and model outcomes must have one entry per prompt")
    edges = np.quantile(score, np.linspace(0.0, 1.0, n_thresholds + 1))
    out = []
    for i, t in enumerate(edges):
        to_strong = score > t if i == len(edges) - 1 else score >= t
        quality = np.where(to_strong, strong_scores, weak_scores).mean()
        out.append(Point(float(to_strong.mean()), float(quality), f"threshold={t:.6g}"))
    return out


def pgr(quality: float, q_weak: float, q_strong: float) -> float:
    """Performance gap recovered: 0 at the weak model's quality, 1 at the strong model's."""
    gap = q_strong - q_weak
    if gap == 0:
        raise InputError("PGR is undefined when both models have the same quality")
    return (quality - q_weak) / gap


def apgr(curve: Sequence[Point], q_weak: float, q_strong: float) -> float:
    """Area under PGR over the share of strong calls (trapezoid over the curve's points)."""
    arr = as_array(curve)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    span = arr[-1, 0] - arr[0, 0]
    if span <= 0:
        raise InputError("APGR needs points at more than one share of strong calls")
    area = np.trapezoid(arr[:, 1], arr[:, 0])
    return float((area - q_weak * span) / ((q_strong - q_weak) * span))


def cpt(curve: Sequence[Point], target_pgr: float, q_weak: float, q_strong: float) -> float | None:
    """Call-performance threshold: the smallest share of strong calls (in %) that reaches ``target_pgr``.

    Linear between the curve's points, as RouteLLM interpolates; None when the curve never gets there.
    """
    arr = as_array(curve)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    goal = q_weak + target_pgr * (q_strong - q_weak)
    if arr[0, 1] >= goal:
        return float(arr[0, 0] * 100)
    for (x0, y0), (x1, y1) in itertools.pairwise(arr):
        if y1 >= goal > y0:
            return float((x0 + (goal - y0) / (y1 - y0) * (x1 - x0)) * 100)
    return None


# ---- helpers ---------------------------------------------------------------------------------------
def as_array(points: Sequence[Point] | np.ndarray) -> np.ndarray:
    if isinstance(points, np.ndarray):
        return points.reshape(-1, 2).astype(np.float64)
    return np.array([[p.cost, p.quality] for p in points], dtype=np.float64).reshape(-1, 2)


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _clip(h: np.ndarray, max_cost: float) -> np.ndarray:
    """The hull up to ``max_cost``, with the crossing point interpolated."""
    inside = h[h[:, 0] <= max_cost]
    if len(inside) == len(h) or len(inside) == 0:
        return inside
    (x0, y0), (x1, y1) = h[len(inside) - 1], h[len(inside)]
    y = y0 + (max_cost - x0) / (x1 - x0) * (y1 - y0)
    return np.vstack([inside, [max_cost, y]])
