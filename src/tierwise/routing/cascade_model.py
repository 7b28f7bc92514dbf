"""The cascade+ router's trained artifact: the learned model its q̂ come from and one fitted cascade
routing plan (cheap set, lone-answer cut, features, risk models, score, threshold, escalation model);
saved as one pickle-free ``.npz`` like the learned router's (``router_file``), loaded without refitting.

``tierwise eval train --router cascade+`` writes it; ``cascade_live.CascadeRoutingRouter`` deploys it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.errors import ConfigError
from tierwise.routing import router_file
from tierwise.routing.cascade_routing import (
    FEATURE_SETS,
    SCORES,
    CascadeRouting,
    RoutingPlan,
    fit_cascade_routing,
)
from tierwise.routing.features import DEFAULT_FEATURES, layout
from tierwise.routing.learned_model import READS as LEARNED_READS
from tierwise.routing.learned_model import LearnedModel
from tierwise.routing.outcomes import Outcomes, RoutePlan

FORMAT = "tierwise-cascade-routing/1"
READS = (FORMAT,)
_RISK = ("mean", "scale", "coef", "intercept")
_FIX = "re-run `tierwise eval train --router cascade+`"


@dataclass
class CascadeRoutingModel:
    """One cascade routing plan, fitted, with the learned model whose predictions it reads."""

    learned: LearnedModel
    plan: RoutingPlan
    lex_cols: tuple[int, int]  # the lexical features' columns in ``learned``'s feature matrix
    best_quality: float  # the best single model's mean quality on the training rows
    n_train: int = 0

    @classmethod
    def fit(
        cls,
        data: Outcomes,
        *,
        embedder: str = DEFAULT_FEATURES,
        seed: int = 0,
        target_cost: float | None = None,
    ) -> CascadeRoutingModel:
        """Fit the family of plans on ``data`` (every setting chosen by cross-validation on it) and keep
        the one ``CascadeRouting.choose`` picks for ``target_cost``."""
        return cls.from_family(fit_cascade_routing(data, embedder=embedder, seed=seed), target_cost, data.n)

    @classmethod
    def from_family(
        cls, family: CascadeRouting, target_cost: float | None = None, n_train: int = 0
    ) -> CascadeRoutingModel:
        plan = family.choose(target_cost)
        return cls(family.learned, plan, family.lex_cols, family.best_quality, n_train)

    @property
    def models(self) -> tuple[str, ...]:
        return self.learned.models

    @property
    def label(self) -> str:
        return self.plan.label(self.models)

    def family(self) -> CascadeRouting:
        """This plan alone as a family: what replay reads."""
        return CascadeRouting(self.models, self.learned, [self.plan], self.lex_cols, self.best_quality)

    def replay(self, data: Outcomes) -> RoutePlan:
        """The plan replayed on recorded outcomes (prompts and the responses each row pays for)."""
        return self.family().replay(data)[0]

    def predict(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(q̂ per model, lexical features) of one prompt, as replay computes them for a row."""
        x = self.learned.features([text], cache=False)
        lo, hi = self.lex_cols
        return self.learned.predict(x)[0].astype(np.float64), x[0, lo:hi]

    # ---- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        meta, arrays = self.learned.pack()
        p = self.plan
        header = {
            "format": FORMAT,
            "learned": meta,
            "plan": {
                "cheap": list(p.cheap),
                "escalate": p.escalate,
                "features": p.features,
                "score": p.score,
                "threshold": _enc(p.threshold),
                "alone_at": _enc(p.alone_at),
                "expected_cost": p.expected_cost,
                "expected_quality": p.expected_quality,
            },
            "lex_cols": list(self.lex_cols),
            "best_quality": _enc(self.best_quality),
            "n_train": self.n_train,
        }
        out = {f"learned_{k}": v for k, v in arrays.items()}
        out.update({f"risk_{k}": v for k, v in p.risk.items()})
        out.update({f"lone_{k}": v for k, v in p.risk_alone.items()})
        return router_file.write(path, header, out)

    @classmethod
    def load(cls, path: str | Path) -> CascadeRoutingModel:
        meta, arrays = router_file.read(path, READS)
        try:
            model = cls._unpack(meta, arrays)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"{path}: a damaged cascade+ router file ({exc}); {_FIX}") from None
        problem = model.problem()
        if problem:
            raise ConfigError(f"{path}: a damaged cascade+ router file ({problem}); {_FIX}")
        return model

    @classmethod
    def _unpack(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> CascadeRoutingModel:
        inner = meta["learned"]
        if inner.get("format") not in LEARNED_READS:
            raise ValueError(f"its learned model has format {inner.get('format')!r}")
        learned = LearnedModel.unpack(
            inner, {k[len("learned_") :]: v for k, v in arrays.items() if k.startswith("learned_")}
        )
        d = meta["plan"]
        plan = RoutingPlan(
            cheap=tuple(int(j) for j in d["cheap"]),
            escalate=None if d["escalate"] is None else int(d["escalate"]),
            features=str(d["features"]),
            score=str(d["score"]),
            threshold=_dec(d["threshold"]),
            risk=_arrays(arrays, "risk_"),
            expected_cost=float(d["expected_cost"]),
            expected_quality=float(d["expected_quality"]),
            alone_at=_dec(d["alone_at"]),
            risk_alone=_arrays(arrays, "lone_"),
        )
        lo, hi = (int(c) for c in meta["lex_cols"])
        return cls(learned, plan, (lo, hi), _dec(meta["best_quality"]), int(meta["n_train"]))

    def problem(self) -> str | None:
        """What makes this plan unusable with its learned model, if anything (a hand-edited file)."""
        p, m = self.plan, len(self.models)
        cols = [*p.cheap, *([p.escalate] if p.escalate is not None else [])]
        if not cols:
            return "the plan names no model"
        if any(not 0 <= j < m for j in cols) or len(set(cols)) != len(cols):
            return f"model columns {cols} do not name {m} distinct trained models"
        lo, hi = self.lex_cols
        width = sum(b - a for a, b in layout(self.learned.embedder).values())
        if not 0 <= lo <= hi <= width:
            return f"lexical columns {lo}:{hi} outside the {width} features of {self.learned.embedder!r}"
        if not p.cheap or p.escalate is None:
            return None  # nothing is scored: no risk model is read
        if p.features not in FEATURE_SETS or p.score not in SCORES:
            return f"features {p.features!r} / score {p.score!r} unknown"
        models = [("risk", p.risk, len(p.cheap))]
        if np.isfinite(p.alone_at):
            models.append(("lone-answer risk", p.risk_alone, 1))
        for name, arrays, k in models:
            if set(arrays) != set(_RISK):
                return f"the {name} model has arrays {sorted(arrays)}, expected {list(_RISK)}"
            want = _risk_width(k, p.features, hi - lo)
            if any(arrays[a].shape != (want,) for a in ("mean", "scale", "coef")):
                return f"the {name} model's arrays do not have the {want} features its plan reads"
        return None


def _risk_width(k: int, features: str, lex: int) -> int:
    """Columns of ``risk_features`` for ``k`` cheap models: agreement patterns, vote share, distinct
    answers, + two predictions (``pred``), + the lexical features (``lex``)."""
    return (1 << k) - 1 + 2 + (2 if "pred" in features else 0) + (lex if "lex" in features else 0)


def _arrays(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def _enc(x: float) -> float | str:
    """A float for the JSON header: ±inf (never / always) as a string, so the header stays strict JSON."""
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")


def _dec(x: float | str) -> float:
    return float(x)
