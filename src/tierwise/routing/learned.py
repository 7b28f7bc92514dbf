"""The learned router: predict each model's quality from prompt features, pick by quality − λ·cost.

One import point for its parts, each a module with one job:

- ``learned_select``: choosing the quality predictors by cross-validation on training data (``LAMBDAS``);
- ``learned_model``: ``LearnedModel``, the trained artifact (fit, λ / τ, calibration, ``.npz`` files);
- ``learned_router``: ``LearnedRouter``, the model deployed behind the ``Router`` protocol.
"""

from __future__ import annotations

from tierwise.routing.learned_model import (
    FORMAT,
    QUALITY_SLACK,
    READS,
    THRESHOLDS,
    LearnedModel,
    choose_cheapest,
)
from tierwise.routing.learned_router import LearnedRouter, kind_for_tier
from tierwise.routing.learned_select import LAMBDAS, Selection, select_predictors, selection_score

__all__ = [
    "FORMAT",
    "LAMBDAS",
    "QUALITY_SLACK",
    "READS",
    "THRESHOLDS",
    "LearnedModel",
    "LearnedRouter",
    "Selection",
    "choose_cheapest",
    "kind_for_tier",
    "select_predictors",
    "selection_score",
]
