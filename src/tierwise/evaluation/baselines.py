"""Routers for offline replay: adapters for ``learned`` and ``cascade``, and the reference baselines.

Each replay router is fit on training outcomes and answers, for evaluation outcomes, one ``RoutePlan``
per value of its cost parameter (which model's answer counts on each row and which models were paid).
Routers see prompts (and, for the cascade, the responses they pay for), never score columns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from tierwise.errors import ConfigError, InputError
from tierwise.routing.cascade_fit import CascadeFamily, fit_cascades
from tierwise.routing.cascade_routing import CascadeRouting, fit_cascade_routing
from tierwise.routing.features import DEFAULT_FEATURES, embedder_names, focus
from tierwise.routing.learned import LAMBDAS, LearnedModel
from tierwise.routing.outcomes import Outcomes, RoutePlan


class ReplayRouter(Protocol):
    name: str

    def fit(self, train: Outcomes) -> None: ...

    def plans(self, test: Outcomes) -> list[RoutePlan]: ...

    def strong_score(self, test: Outcomes) -> np.ndarray | None:
        """Two-model data: per prompt, how much the router prefers the strong model (for APGR)."""
        ...


def _lambda_plans(q: np.ndarray, costs: np.ndarray, n_models: int) -> list[RoutePlan]:
    """Sweep λ in argmax(q − λ·cost/max cost); λ = inf is the cheapest model everywhere."""
    top = float(costs.max()) or 1.0
    plans = []
    for lam in LAMBDAS:
        if np.isinf(lam):
            pick = np.full(len(q), int(np.argmin(costs)))
        else:
            pick = np.argmax(q - (lam + 1e-9) * costs / top, axis=1)
        plans.append(RoutePlan.single_call(f"λ={lam:.4g}", pick, n_models, float(lam)))
    return plans


class LearnedReplay:
    """The learned router, swept over λ."""

    name = "learned"

    def __init__(self, embedder: str = DEFAULT_FEATURES, seed: int = 0) -> None:
        self.embedder = embedder
        self.seed = seed
        self.model: LearnedModel | None = None

    def fit(self, train: Outcomes) -> None:
        self.model = LearnedModel.fit(train, embedder=self.embedder, seed=self.seed)

    def _q(self, test: Outcomes) -> np.ndarray:
        if self.model is None:
            raise InputError("fit the router before replaying it")
        return self.model.predict(self.model.features(test.prompts))

    def plans(self, test: Outcomes) -> list[RoutePlan]:
        assert self.model is not None
        return _lambda_plans(self._q(test), self.model.costs, len(test.models))

    def predictions(self, test: Outcomes) -> np.ndarray:
        """Predicted quality per (prompt, model): the replay report's reliability diagram reads it."""
        return self._q(test)

    def strong_score(self, test: Outcomes) -> np.ndarray | None:
        return _strong_minus_weak(self._q, test)


def _strong_minus_weak(predict: Callable[[Outcomes], np.ndarray], test: Outcomes) -> np.ndarray | None:
    """Two-model data: the predicted quality gain of the strong model, RouteLLM's routing score."""
    if len(test.models) != 2:
        return None
    q = predict(test)
    s, w = test.strong_weak()
    return q[:, s] - q[:, w]


class CascadeRoutingReplay:
    """Replay adapter (``ReplayRouter``): cascade routing swept over its budgets."""

    name = "cascade+"

    def __init__(self, embedder: str = DEFAULT_FEATURES, seed: int = 0) -> None:
        self.embedder = embedder
        self.seed = seed
        self.family: CascadeRouting | None = None

    def fit(self, train: Outcomes) -> None:
        self.family = fit_cascade_routing(train, embedder=self.embedder, seed=self.seed)

    def plans(self, test: Outcomes) -> list[RoutePlan]:
        if self.family is None:
            raise InputError("fit the router before replaying it")
        return self.family.replay(test)

    def strong_score(self, test: Outcomes) -> np.ndarray | None:
        return None


class CascadeReplay:
    """The cascade family, swept over budgets; it pays for every model it calls."""

    name = "cascade"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.family: CascadeFamily | None = None

    def fit(self, train: Outcomes) -> None:
        self.family = fit_cascades(train, seed=self.seed)

    def plans(self, test: Outcomes) -> list[RoutePlan]:
        if self.family is None:
            raise InputError("fit the router before replaying it")
        return self.family.replay(test)

    def strong_score(self, test: Outcomes) -> np.ndarray | None:
        return None


class TfidfKnnReplay:
    """Baseline: TF-IDF cosine kNN, neighbours' mean score per model, swept over λ."""

    name = "knn-tfidf"

    def __init__(self, k: int = 20) -> None:
        self.k = k
        self._fitted: tuple[object, np.ndarray, np.ndarray, np.ndarray] | None = None

    def fit(self, train: Outcomes) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(sublinear_tf=True, min_df=2 if train.n > 200 else 1)
        x = vec.fit_transform([focus(p) for p in train.prompts])
        self._fitted = (vec, x, train.scores, train.mean_cost())

    def _q(self, test: Outcomes) -> np.ndarray:
        if self._fitted is None:
            raise InputError("fit the router before replaying it")
        vec, x, y, _ = self._fitted
        sims = (vec.transform([focus(p) for p in test.prompts]) @ x.T).toarray()  # type: ignore[attr-defined]
        k = min(self.k, x.shape[0])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        return y[idx].mean(axis=1)

    def plans(self, test: Outcomes) -> list[RoutePlan]:
        assert self._fitted is not None
        return _lambda_plans(self._q(test), self._fitted[3], len(test.models))

    def strong_score(self, test: Outcomes) -> np.ndarray | None:
        return _strong_minus_weak(self._q, test)


class RandomReplay:
    """Baseline: each prompt goes to the best training model with probability p, else the cheapest."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._pair: tuple[int, int] | None = None

    def fit(self, train: Outcomes) -> None:
        self._pair = (train.strongest(), int(np.argmin(train.mean_cost())))

    def plans(self, test: Outcomes) -> list[RoutePlan]:
        if self._pair is None:
            raise InputError("fit the router before replaying it")
        strong, cheap = self._pair
        u = np.random.default_rng(self.seed).random(test.n)
        return [
            RoutePlan.single_call(f"p={p:.1f}", np.where(u < p, strong, cheap), len(test.models), p)
            for p in np.linspace(0, 1, 11)
        ]

    def strong_score(self, test: Outcomes) -> np.ndarray | None:
        return np.random.default_rng(self.seed).random(test.n) if len(test.models) == 2 else None


class PolicyReplay:
    """The policy router on outcome rows: one kind, so one tier for every prompt. Its sweep is the choice
    of that tier, and its frontier is the single models' hull: what routing must beat."""

    name = "policy"

    def __init__(self) -> None:
        self._order: list[int] = []

    def fit(self, train: Outcomes) -> None:
        self._order = list(np.argsort(train.mean_cost(), kind="stable"))

    def plans(self, test: Outcomes) -> list[RoutePlan]:
        m = len(test.models)
        return [
            RoutePlan.single_call(test.models[j], np.full(test.n, j), m, float(i))
            for i, j in enumerate(self._order)
        ]

    def strong_score(self, test: Outcomes) -> np.ndarray | None:
        return None


class OracleReplay:
    """Reference only: reads the evaluation rows' scores, which no router can. λ-sweep of the true scores."""

    name = "oracle"

    def __init__(self) -> None:
        self._costs: np.ndarray | None = None

    def fit(self, train: Outcomes) -> None:
        self._costs = train.mean_cost()

    def plans(self, test: Outcomes) -> list[RoutePlan]:
        return _lambda_plans(test.scores, test.mean_cost(), len(test.models))

    def strong_score(self, test: Outcomes) -> np.ndarray | None:
        if len(test.models) != 2:
            return None
        s, w = test.strong_weak()
        return ((test.scores[:, s] > 0.5) & (test.scores[:, w] <= 0.5)).astype(np.float64)


ROUTERS: dict[str, Callable[[int, str], ReplayRouter]] = {
    "learned": lambda seed, embedder: LearnedReplay(embedder=embedder, seed=seed),
    "cascade": lambda seed, embedder: CascadeReplay(seed=seed),
    "cascade+": lambda seed, embedder: CascadeRoutingReplay(embedder=embedder, seed=seed),
    "knn-tfidf": lambda seed, embedder: TfidfKnnReplay(),
    "random": lambda seed, embedder: RandomReplay(seed=seed),
    "policy": lambda seed, embedder: PolicyReplay(),
    "oracle": lambda seed, embedder: OracleReplay(),
}


def make_router(name: str, seed: int = 0, embedder: str = DEFAULT_FEATURES) -> ReplayRouter:
    if name not in ROUTERS:
        raise InputError(f"unknown router {name!r}: use one of {', '.join(ROUTERS)}")
    try:
        embedder_names(embedder)
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    return ROUTERS[name](seed, embedder)
