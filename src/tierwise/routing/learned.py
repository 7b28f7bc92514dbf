"""The learned router: predict each model's quality from a prompt embedding, pick by quality − λ·cost.

``LearnedModel`` is the trained artifact (fit on ``Outcomes``, saved as one pickle-free ``.npz``);
``LearnedRouter`` deploys it behind the ``Router`` protocol for the models of a user's catalog.

Trained on partial rows (the ledger's shadow checks score only the routed tier and large), each model's
predictor learns from the rows that score it, and the router picks the *cheapest model whose predicted
quality clears a threshold* τ: a quality − λ·cost trade-off would compare predictions learned on
different rows as if they were one scale.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tierwise.core import Capability, Decision, Task, TaskKind, Tier
from tierwise.errors import ConfigError, InputError, RoutingError
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.routing.base import CallFn
from tierwise.routing.features import DEFAULT_FEATURES, embed, layout
from tierwise.routing.frontier import Point, aiq, apgr, routellm_curve
from tierwise.routing.outcomes import Outcomes, fold_indices
from tierwise.routing.policy import PolicyRouter
from tierwise.routing.predictors import Predictor, candidates

log = logging.getLogger(__name__)

FORMAT = "tierwise-learned-router/2"  # /2: several predictors, averaged
READS = ("tierwise-learned-router/1", FORMAT)
# λ is in quality per cost of the costliest model; this grid spans "cost is free" to "only cost matters".
LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 121), [np.inf]])
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
        with _one_blas_thread():  # small solves: threads only add overhead, and contend on 2 cores
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
        options = [o.copy() for o in choices] if choices else candidates(layout(embedder))
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
            return float(np.mean([_selection_score(q, data, costs, max_cost) for q in oofs]))

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
        model = cls(
            models=data.models,
            costs=costs,
            cost_unit=data.cost_unit,
            embedder=embedder,
            predictors=tuple(o.copy().fit(x, data.scores, mask) for o in chosen),
            large=(data.models[int(np.argmax(costs))],),
            calib_q=oof.astype(np.float32),
            selection=selection,
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
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
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
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path, meta=np.array(json.dumps(meta)), costs=self.costs, calib_q=self.calib_q, **arrays
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> LearnedModel:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"learned router file not found: {path} (create it with `tierwise eval train`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{path} is not a tierwise learned router file ({exc})") from None
        if meta.get("format") not in READS:
            raise ConfigError(
                f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}; re-run eval train"
            )
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


class LearnedRouter:
    """A ``LearnedModel`` deployed on a catalog: trained model names map to catalog ids.

    Catalog models the router was not trained on are never picked by it; tasks none of the mapped models
    can take (pinned to another model or tier, or needing a capability they lack) go to ``fallback``, and
    so do tasks where the predicted quality of its own pick is below ``min_confidence`` (a prompt unlike
    anything it trained on, where the policy's rules are the safer bet).
    """

    name = "learned"

    def __init__(
        self,
        model: LearnedModel,
        catalog: Catalog,
        mapping: Mapping[str, str] | None = None,
        *,
        fallback: PolicyRouter | None = None,
        lam: float | None = None,
        min_confidence: float | None = None,
    ) -> None:
        self.model = model
        self.catalog = catalog
        self.fallback = fallback
        self.min_confidence = min_confidence
        self.lam = model.lam if lam is None else lam
        mapping = dict(mapping) if mapping is not None else {m: m for m in model.models if m in catalog}
        unknown = sorted(set(mapping) - set(model.models))
        if unknown:
            raise ConfigError(
                f"learned router mapping names models it was not trained on: {unknown}; "
                f"trained on: {list(model.models)}"
            )
        self.specs: dict[int, ModelSpec] = {
            model.models.index(trained): catalog.get(target) for trained, target in mapping.items()
        }
        if not self.specs:
            raise ConfigError(
                f"none of the learned router's models {list(model.models)} maps to the catalog: "
                "give a mapping such as {'gpt-4-1106-preview': 'openai/gpt-5.4'}"
            )
        self._all = np.array(sorted(self.specs), dtype=np.int64)
        covered = {s.id for s in self.specs.values()}
        untrained = sorted(s.id for s in catalog if s.id not in covered and not s.has(Capability.EMBEDDINGS))
        if untrained:
            warnings.warn(
                f"learned router was not trained on {', '.join(untrained)}: tasks that need them go to the "
                f"{getattr(fallback, 'name', 'fallback')} router",
                stacklevel=2,
            )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        catalog: Catalog,
        mapping: Mapping[str, str] | None = None,
        *,
        fallback: PolicyRouter | None = None,
        min_confidence: float | None = None,
    ) -> LearnedRouter:
        """What ``[routing] learned_model = FILE`` deploys: a saved model on the user's catalog."""
        return cls(
            LearnedModel.load(path), catalog, mapping, fallback=fallback, min_confidence=min_confidence
        )

    calls_model = False

    async def route(self, task: Task, call: CallFn | None = None) -> Decision:
        return self.decide(task)

    def decide(self, task: Task, vector: np.ndarray | None = None) -> Decision:
        """The decision; pass the task's embedding when it is known (the part that stays under 1 ms)."""
        if vector is None:
            vector = self.model.features([task.text], cache=False)[0]
        return self._decide(task, vector)

    def predicted_quality(self, text: str, model_id: str) -> float:
        """The predicted quality of catalog model ``model_id`` on ``text`` (0 for a model not trained on):
        the cascade's ``learned`` validator."""
        for j, spec in self.specs.items():
            if spec.id == model_id:
                return float(self.model.predict(self.model.features([text], cache=False)[0])[0][j])
        return 0.0

    def _decide(self, task: Task, vector: np.ndarray) -> Decision:
        decision = self._learned_decision(task, vector)
        floor = self.min_confidence
        confidence = decision.confidence or 0.0
        if (
            floor is not None
            and self.fallback is not None
            and decision.router == self.name
            and confidence < floor
        ):
            # Expected on unfamiliar prompts, so not a warning: the reason in the ledger says it.
            return self._fall_back(
                task,
                f"predicted quality {confidence:.2f} for {decision.model} is below {floor:.2f}",
                quiet=True,
            )
        return decision

    def _learned_decision(self, task: Task, vector: np.ndarray) -> Decision:
        plain = task.model is None and task.tier is None and not task.requires and not task.tools
        plain = plain and task.output_schema is None and task.json_schema is None
        cols = self._all if plain else np.array(self._eligible(task), dtype=np.int64)
        if len(cols) == 0:
            return self._fall_back(task, "no model it was trained on can take this task")
        q = self.model.predict(vector)[0]
        cost = self.model.norm_costs[cols]
        if self.model.threshold is not None:
            return self._by_threshold(task, q, cols)
        if np.isinf(self.lam):
            order = np.argsort(cost, kind="stable")
        else:
            # Ties (equal utility) go to the cheaper model: a hair of extra cost breaks them.
            order = np.argsort(-(q[cols] - (self.lam + 1e-9) * cost), kind="stable")
        ranked = cols[order]
        best = int(ranked[0])
        spec = self.specs[best]
        lam = "inf" if np.isinf(self.lam) else f"{self.lam:.3g}"
        reason = f"learned: predicted quality {q[best]:.2f} for {spec.id} at λ={lam}"
        if len(ranked) > 1:
            reason += f" (next: {self.specs[int(ranked[1])].id} {q[int(ranked[1])]:.2f})"
        return Decision(
            tier=spec.tier,
            model=spec.id,
            reason=reason,
            kind=task.kind or kind_for_tier(spec.tier),
            confidence=float(q[best]),
            alternatives=tuple(self.specs[int(j)].id for j in ranked[1:]),
            router=self.name,
        )

    def _by_threshold(self, task: Task, q: np.ndarray, cols: np.ndarray) -> Decision:
        tau = float(self.model.threshold or 0.0)
        cols = cols[np.argsort(self.model.costs[cols], kind="stable")]  # cheapest first
        clears = [int(j) for j in cols if q[j] >= tau]
        best = clears[0] if clears else int(cols[np.argmax(q[cols])])
        spec = self.specs[best]
        verdict = f"clears τ={tau:.2f}" if clears else f"none clears τ={tau:.2f}: the best predicted"
        below = ", ".join(f"{self.specs[int(j)].id} {q[int(j)]:.2f}" for j in cols if int(j) != best)
        reason = f"learned: predicted quality {q[best]:.2f} for {spec.id} ({verdict})"
        return Decision(
            tier=spec.tier,
            model=spec.id,
            reason=reason + (f"; others: {below}" if below else ""),
            kind=task.kind or kind_for_tier(spec.tier),
            confidence=float(q[best]),
            alternatives=tuple(self.specs[int(j)].id for j in cols if int(j) != best),
            router=self.name,
        )

    def _eligible(self, task: Task) -> list[int]:
        needed = set(task.requires)
        if task.tools:
            needed.add(Capability.TOOLS)
        if task.output_schema is not None or task.json_schema is not None:
            needed.add(Capability.JSON_SCHEMA)
        out = []
        for j, spec in self.specs.items():
            if task.model is not None and self.catalog.find(task.model) is not spec:
                continue
            if task.tier is not None and spec.tier is not task.tier:
                continue
            if needed - set(spec.capabilities):
                continue
            out.append(j)
        return out

    def _fall_back(self, task: Task, why: str, *, quiet: bool = False) -> Decision:
        if self.fallback is None:
            raise RoutingError(f"learned router: {why}, and no fallback router is configured")
        (log.debug if quiet else log.warning)(
            "learned router: %s; using the %s router", why, self.fallback.name
        )
        d = self.fallback.decide(task)
        return Decision(
            d.tier,
            d.model,
            f"learned: {why}; {self.fallback.name}: {d.reason}",
            d.kind,
            d.confidence,
            d.alternatives,
            d.router,
        )


def _one_blas_thread() -> AbstractContextManager[object]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it, fitting is only slower
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _view(option: Predictor, component: str) -> dict[str, str]:
    view = option.views.get(component)
    return {component: view} if view else {}


def kind_for_tier(tier: Tier) -> TaskKind:
    """A task without a kind is recorded under a representative kind of the tier it was routed to."""
    return {Tier.LARGE: TaskKind.AMBIGUOUS, Tier.MINI: TaskKind.TOOL_OP, Tier.NANO: TaskKind.PREPROCESS}[tier]


def choose_cheapest(q: np.ndarray, costs: np.ndarray, tau: float) -> np.ndarray:
    """Per row, the cheapest model whose predicted quality is at least ``tau``, else the best predicted."""
    order = np.argsort(costs, kind="stable")
    ok = q[:, order] >= tau
    first = order[np.argmax(ok, axis=1)]
    return np.where(ok.any(axis=1), first, np.argmax(q, axis=1))


def _brier(q: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> float:
    return float(((q - scores) ** 2)[mask].mean())


def _selection_score(q: np.ndarray, data: Outcomes, costs: np.ndarray, max_cost: float) -> float:
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
