"""The learned router's trained artifact: per-model quality predictors, the cost scale, and the λ (or, for
partial ledger rows, the threshold τ) it routes at; saved as one pickle-free ``.npz``.

``LearnedModel.fit`` chooses its predictors by cross-validation on the training data
(``learned_select``); ``learned_router.LearnedRouter`` deploys a model behind the ``Router`` protocol.
Trained on partial rows (the ledger's shadow checks score only the routed tier and large), each model's
predictor learns from the rows that score it, and the router picks the *cheapest model whose predicted
quality clears a threshold* τ: a quality − λ·cost trade-off would compare predictions learned on
different rows as if they were one scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.errors import ConfigError, InputError
from tierwise.routing import router_file
from tierwise.routing.features import DEFAULT_FEATURES, embed, layout
from tierwise.routing.learned_select import LAMBDAS, one_blas_thread, select_predictors
from tierwise.routing.outcomes import Outcomes
from tierwise.routing.predictors import Predictor

FORMAT = "tierwise-learned-router/2"  # /2: several predictors, averaged
READS = ("tierwise-learned-router/1", FORMAT)
THRESHOLDS = np.linspace(0.0, 1.0, 101)  # τ for partial-row routers: 0 = cheapest always, 1 = large always
# With partial rows the default τ keeps the estimated quality within this of the large model's alone.
QUALITY_SLACK = 0.05


@dataclass
class LearnedModel:
    """Per-model quality predictor plus the cost scale and the λ it routes at."""

    models: tuple[str, ...]
    costs: np.ndarray  # mean cost per call of each model on the training data
    cost_unit: str
    embedder: str
    predictors: tuple[Predictor, ...]  # their predictions are averaged
    lam: float = 0.0
    large: tuple[str, ...] = ()  # models that count as the large tier for target_large_share
    calib_q: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # out-of-fold predictions
    selection: dict[str, float] = field(default_factory=dict)  # CV score of each candidate predictor
    n_train: int = 0
    threshold: float | None = None  # set: route to the cheapest model predicted >= τ (partial-row training)

    # ---- training ------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        data: Outcomes,
        *,
        embedder: str = DEFAULT_FEATURES,
        choices: Sequence[Predictor] | None = None,
        folds: int = 5,
        seed: int = 0,
        features: np.ndarray | None = None,
    ) -> LearnedModel:
        """Fit on outcomes; the predictor is chosen by cross-validation on the training data only.

        The criterion is AIQ of the λ sweep, or for two models RouteLLM's APGR (its metric of record,
        which, unlike AIQ, is not dominated by the area both models share). The router predicts with the
        mean of the two best candidates.
        Folds keep groups whole when there are at least ``folds`` groups (MMLU subjects), so the choice
        rewards predictors that carry over to unseen subjects. ``features`` skips embedding (precomputed).
        """
        x = features if features is not None else embed(list(data.prompts), embedder)
        with one_blas_thread():  # small solves: threads only add overhead, and contend on 2 cores
            return cls._fit(data, x, embedder, choices, folds, seed)

    @classmethod
    def _fit(
        cls,
        data: Outcomes,
        x: np.ndarray,
        embedder: str,
        choices: Sequence[Predictor] | None,
        folds: int,
        seed: int,
    ) -> LearnedModel:
        if len(x) != data.n:
            raise InputError(f"{len(x)} feature rows for {data.n} prompts")
        costs = data.mean_cost()
        mask = data.observed if data.partial else None
        chosen = select_predictors(data, x, layout(embedder), choices, folds, seed)
        model = cls(
            models=data.models,
            costs=costs,
            cost_unit=data.cost_unit,
            embedder=embedder,
            predictors=chosen.predictors,
            large=(data.models[int(np.argmax(costs))],),
            calib_q=chosen.oof.astype(np.float32),
            selection=chosen.scores,
            n_train=data.n,
        )
        if mask is not None:
            model.threshold = model.default_threshold(data)
        else:
            model.lam = model.default_lambda(data)
        return model

    def default_threshold(self, data: Outcomes, slack: float = QUALITY_SLACK) -> float:
        """The τ that routes cheapest while the estimated quality on the training rows stays within
        ``slack`` of the large model's alone; of the τ that tie, the middle one (the widest margin).

        The estimate takes the recorded score where the chosen model was scored and the out-of-fold
        prediction where it was not, so unscored choices count at what the router believes, no better.
        """
        large = int(np.argmax(self.costs))
        mask = data.mask
        rows = np.arange(data.n)
        target = float(data.scores[mask[:, large], large].mean()) - slack - 1e-12
        feasible: list[tuple[float, float]] = []  # (estimated cost, τ)
        for tau in THRESHOLDS:
            pick = self.choose(self.calib_q, threshold=float(tau))
            est = np.where(mask[rows, pick], data.scores[rows, pick], self.calib_q[rows, pick])
            if est.mean() >= target:
                feasible.append((float(self.costs[pick].mean()), float(tau)))
        if not feasible:
            return 1.0
        cheapest = min(c for c, _ in feasible)
        ties = [tau for c, tau in feasible if c <= cheapest * (1 + 1e-9)]
        return ties[len(ties) // 2]

    def default_lambda(self, data: Outcomes) -> float:
        """The largest λ whose cross-validated quality still matches the best single model's."""
        target = float(data.mean_quality().max())
        rows = np.arange(data.n)
        ok = [
            lam
            for lam in LAMBDAS
            if data.scores[rows, self.choose(self.calib_q, lam)].mean() >= target - 1e-12
        ]
        return float(max(ok)) if ok else 0.0

    # ---- prediction -----------------------------------------------------------------------------------
    def features(self, texts: Sequence[str], *, cache: bool = True) -> np.ndarray:
        return embed(list(texts), self.embedder, cache=cache)

    @property
    def predictor(self) -> Predictor:
        """The best predictor by cross-validation (the first of ``predictors``)."""
        return self.predictors[0]

    @property
    def label(self) -> str:
        labels = [p.label for p in self.predictors]
        return labels[0] if len(labels) == 1 else f"mean({', '.join(labels)})"

    def predict(self, x: np.ndarray) -> np.ndarray:
        if len(self.predictors) == 1:
            return self.predictors[0].predict(x)
        return np.mean([p.predict(x) for p in self.predictors], axis=0)

    @property
    def norm_costs(self) -> np.ndarray:
        top = float(self.costs.max())
        return self.costs / top if top > 0 else self.costs

    def choose(
        self, q: np.ndarray, lam: float | None = None, *, threshold: float | None = None
    ) -> np.ndarray:
        """Per row, the model with the best predicted quality − λ·cost (λ=inf: the cheapest model); for a
        threshold router (or given ``threshold``), the cheapest model predicted at least τ, else the best."""
        tau = threshold if threshold is not None else (self.threshold if lam is None else None)
        if tau is not None:
            return choose_cheapest(q, self.costs, tau)
        lam = self.lam if lam is None else lam
        if np.isinf(lam):
            return np.full(len(q), int(np.argmin(self.costs)))
        # Ties (equal utility) go to the cheaper model: subtract a hair of cost.
        return np.argmax(q - (lam + 1e-9) * self.norm_costs, axis=1)

    def calibrate(
        self,
        *,
        target_cost: float | None = None,
        target_large_share: float | None = None,
        texts: Sequence[str] | None = None,
        large: Sequence[str] | None = None,
    ) -> float:
        """Set λ so the expected cost per call (or the share of calls to the large tier) meets a target.

        RouteLLM's threshold calibration, for N models: on calibration prompts (``texts``, else the
        training prompts' out-of-fold predictions) take the smallest λ (the best quality) that keeps the
        estimated mean cost <= ``target_cost`` (in the training data's unit) or the share of calls to
        ``large`` models (default: the costliest) <= ``target_large_share``.
        """
        if (target_cost is None) == (target_large_share is None):
            raise InputError("calibrate needs exactly one of target_cost= or target_large_share=")
        q = self.predict(self.features(texts)) if texts is not None else self.calib_q
        if len(q) == 0:
            raise InputError("no calibration prompts: pass texts= (e.g. a sample of your own traffic)")
        big = set(large or self.large)
        unknown = big - set(self.models)
        if unknown:
            raise InputError(f"large models {sorted(unknown)} are not among the trained {list(self.models)}")
        big_idx = np.array([m in big for m in self.models])
        goal = target_cost if target_cost is not None else target_large_share
        if self.threshold is not None:
            # Higher τ sends more calls up: take the highest τ (the best quality) that meets the target.
            for tau in THRESHOLDS[::-1]:
                pick = self.choose(q, threshold=float(tau))
                value = self.costs[pick].mean() if target_cost is not None else big_idx[pick].mean()
                if value <= goal + 1e-12:  # type: ignore[operator]
                    self.threshold = float(tau)
                    return self.threshold
            self.threshold = 0.0
            return self.threshold
        for lam in LAMBDAS:
            pick = self.choose(q, lam)
            value = self.costs[pick].mean() if target_cost is not None else big_idx[pick].mean()
            if value <= (target_cost if target_cost is not None else target_large_share) + 1e-12:  # type: ignore[operator]
                self.lam = float(lam)
                return self.lam
        self.lam = float(np.inf)  # even the cheapest model alone misses the target: route everything there
        return self.lam

    # ---- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One ``.npz`` file: arrays plus a JSON header; loads with ``allow_pickle=False``."""
        meta, arrays = self.pack()
        return router_file.write(path, meta, arrays)

    def pack(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON header, arrays) of this model: what ``save`` writes, and what a cascade+ file embeds."""
        meta = {
            "format": FORMAT,
            "models": list(self.models),
            "cost_unit": self.cost_unit,
            "embedder": self.embedder,
            "predictors": [
                {"kind": p.kind, "params": p.params, "views": p.views, "layout": p.layout}
                for p in self.predictors
            ],
            "lam": None if np.isinf(self.lam) else self.lam,
            "large": list(self.large),
            "selection": self.selection,
            "n_train": self.n_train,
            "threshold": self.threshold,
        }
        arrays = {f"p{i}_{k}": v for i, p in enumerate(self.predictors) for k, v in p.arrays.items()}
        return meta, {"costs": self.costs, "calib_q": self.calib_q, **arrays}

    @classmethod
    def load(cls, path: str | Path) -> LearnedModel:
        meta, arrays = router_file.read(path, READS)
        try:
            return cls.unpack(meta, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{path}: a damaged learned router file ({exc}); re-run `tierwise eval train`"
            ) from None

    @classmethod
    def unpack(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> LearnedModel:
        """The model ``pack`` described; KeyError, TypeError or ValueError when a part is missing."""
        # Format 1 held one predictor, its arrays prefixed "p_"; format 2 a list, prefixed "p0_", "p1_"...
        specs = meta["predictors"] if "predictors" in meta else [meta["predictor"]]
        prefixes = [f"p{i}_" for i in range(len(specs))] if "predictors" in meta else ["p_"]
        predictors = []
        for spec, prefix in zip(specs, prefixes, strict=True):
            layout_ = {k: tuple(v) for k, v in spec.get("layout", {}).items()}
            pred = Predictor(spec["kind"], spec["params"], spec.get("views", {}), layout_)
            pred.arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            predictors.append(pred)
        lam = meta["lam"]
        return cls(
            models=tuple(meta["models"]),
            costs=arrays["costs"],
            cost_unit=meta["cost_unit"],
            embedder=meta["embedder"],
            predictors=tuple(predictors),
            lam=float("inf") if lam is None else float(lam),
            large=tuple(meta["large"]),
            calib_q=arrays["calib_q"],
            selection=meta["selection"],
            n_train=int(meta["n_train"]),
            threshold=meta.get("threshold"),
        )


def choose_cheapest(q: np.ndarray, costs: np.ndarray, tau: float) -> np.ndarray:
    """Per row, the cheapest model whose predicted quality is at least ``tau``, else the best predicted."""
    order = np.argsort(costs, kind="stable")
    ok = q[:, order] >= tau
    first = order[np.argmax(ok, axis=1)]
    return np.where(ok.any(axis=1), first, np.argmax(q, axis=1))
