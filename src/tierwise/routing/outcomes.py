"""Outcome records: what each model scored and cost on each prompt, the data routers train and replay on.

One in-memory shape for every source (RouterBench CSVs, RouteLLM MMLU CSVs, the ledger): a prompt list and
aligned ``(n_prompts, n_models)`` matrices of score and cost, optionally the recorded responses. Ledger rows
are *partial*: a shadow check scores the routed model and the large one only, so ``observed`` marks which
cells hold a score (``None``: all of them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from tierwise.errors import InputError


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Per-prompt, per-model outcomes. Row ``i`` of every array belongs to ``prompts[i]``.

    ``scores`` are qualities in [0, 1] (1 = correct); ``costs`` are USD per call, or, when ``cost_unit`` is
    ``"strong_share"`` (RouteLLM data without prices), 1 for the strong model and 0 for the weak one so that
    mean cost is the share of calls sent to the strong model. ``groups`` names the task or MMLU subject of
    each row; splits that must not leak (held-out subjects) go by group.
    """

    prompts: tuple[str, ...]
    models: tuple[str, ...]
    scores: np.ndarray
    costs: np.ndarray
    groups: tuple[str, ...]
    responses: tuple[tuple[str | None, ...], ...] | None = None
    cost_unit: str = "usd"
    sources: tuple[str, ...] = ()
    skipped: int = 0  # rows dropped at load time (blank scores), reported, never silently lost
    excluded: int = 0  # rows left out on purpose (RouteLLM's contaminated prompts)
    meta: dict[str, str] = field(default_factory=dict)
    observed: np.ndarray | None = None  # (n, m) bool: which cells were scored; None when every cell was

    def __post_init__(self) -> None:
        n, m = len(self.prompts), len(self.models)
        if m < 2:
            raise InputError(
                f"outcomes name {m} model(s) ({', '.join(self.models) or 'none'}): routing needs at least two"
            )
        for name, arr in (("scores", self.scores), ("costs", self.costs)):
            if arr.shape != (n, m):
                raise InputError(f"outcomes.{name} has shape {arr.shape}, expected ({n}, {m})")
        if len(self.groups) != n:
            raise InputError(f"outcomes.groups has {len(self.groups)} entries for {n} prompts")
        if self.responses is not None and len(self.responses) != n:
            raise InputError(f"outcomes.responses has {len(self.responses)} rows for {n} prompts")
        if self.observed is not None and self.observed.shape != (n, m):
            raise InputError(f"outcomes.observed has shape {self.observed.shape}, expected ({n}, {m})")

    # ---- shape -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def n(self) -> int:
        return len(self.prompts)

    @property
    def has_responses(self) -> bool:
        return self.responses is not None

    def model_index(self, model: str) -> int:
        try:
            return self.models.index(model)
        except ValueError:
            raise InputError(f"model {model!r} is not in the outcomes ({', '.join(self.models)})") from None

    def response(self, row: int, model: int) -> str | None:
        return None if self.responses is None else self.responses[row][model]

    @property
    def partial(self) -> bool:
        """Some cells hold no score (ledger rows): only the routed and the large model were scored."""
        return self.observed is not None and not bool(self.observed.all())

    @property
    def mask(self) -> np.ndarray:
        return np.ones(self.scores.shape, dtype=bool) if self.observed is None else self.observed

    # ---- per-model summaries -----------------------------------------------------------------------
    def mean_quality(self) -> np.ndarray:
        """Per model, the mean over the rows that scored it."""
        if self.observed is None:
            return self.scores.mean(axis=0)
        return (self.scores * self.observed).sum(axis=0) / np.maximum(self.observed.sum(axis=0), 1)

    def mean_cost(self) -> np.ndarray:
        if self.observed is None:
            return self.costs.mean(axis=0)
        return (self.costs * self.observed).sum(axis=0) / np.maximum(self.observed.sum(axis=0), 1)

    def strongest(self) -> int:
        """Index of the model with the best mean quality (ties: the costlier one, as the 'large' model)."""
        q, c = self.mean_quality(), self.mean_cost()
        return int(max(range(len(self.models)), key=lambda j: (q[j], c[j])))

    def costliest(self) -> int:
        return int(np.argmax(self.mean_cost()))

    def strong_weak(self) -> tuple[int, int]:
        """Two-model data: (strong, weak) indices; strong as loaded (``meta["strong"]``), else the better."""
        if len(self.models) != 2:
            raise InputError(f"strong/weak needs exactly two models, these outcomes have {len(self.models)}")
        named = self.meta.get("strong")
        strong = self.models.index(named) if named in self.models else self.strongest()
        return strong, 1 - strong

    # ---- subsets and splits ------------------------------------------------------------------------
    def subset(self, rows: Sequence[int] | np.ndarray) -> Outcomes:
        idx = np.asarray(rows, dtype=np.int64)
        return replace(
            self,
            prompts=tuple(self.prompts[i] for i in idx),
            scores=self.scores[idx],
            costs=self.costs[idx],
            groups=tuple(self.groups[i] for i in idx),
            responses=None if self.responses is None else tuple(self.responses[i] for i in idx),
            observed=None if self.observed is None else self.observed[idx],
            skipped=0,
            excluded=0,
        )

    def select_models(self, models: Sequence[str]) -> Outcomes:
        """The same prompts restricted to ``models`` (in that order)."""
        cols = [self.model_index(m) for m in models]
        responses = None
        if self.responses is not None:
            responses = tuple(tuple(r[j] for j in cols) for r in self.responses)
        return replace(
            self,
            models=tuple(models),
            scores=self.scores[:, cols],
            costs=self.costs[:, cols],
            responses=responses,
            observed=None if self.observed is None else self.observed[:, cols],
        )

    def train_test_split(
        self, test_fraction: float = 0.3, *, seed: int = 0, by_group: bool = False
    ) -> tuple[Outcomes, Outcomes]:
        """A random split of rows, or of whole groups (MMLU subjects) when ``by_group``."""
        if not 0 < test_fraction < 1:
            raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
        rng = np.random.default_rng(seed)
        if by_group:
            names = sorted(set(self.groups))
            if len(names) < 2:
                raise InputError(f"a split by group needs at least two groups, found {names}")
            rng.shuffle(names)
            k = min(len(names) - 1, max(1, round(test_fraction * len(names))))
            held = set(names[:k])
            test = np.array([i for i, g in enumerate(self.groups) if g in held], dtype=np.int64)
        else:
            perm = rng.permutation(self.n)
            test = np.sort(perm[: max(1, round(test_fraction * self.n))])
        mask = np.zeros(self.n, dtype=bool)
        mask[test] = True
        return self.subset(np.flatnonzero(~mask)), self.subset(np.flatnonzero(mask))

    def folds(
        self, k: int = 5, *, seed: int = 0, by_group: bool = False
    ) -> Iterator[tuple[Outcomes, Outcomes]]:
        """k (train, test) pairs; every row is in exactly one test fold. ``by_group`` keeps groups whole."""
        for train_idx, test_idx in fold_indices(self, k, seed=seed, by_group=by_group):
            yield self.subset(train_idx), self.subset(test_idx)

    def by_group(self) -> dict[str, Outcomes]:
        out: dict[str, list[int]] = {}
        for i, g in enumerate(self.groups):
            out.setdefault(g, []).append(i)
        return {g: self.subset(rows) for g, rows in out.items()}


def fold_indices(
    data: Outcomes, k: int, *, seed: int = 0, by_group: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Index pairs for k-fold CV. By group, groups are dealt largest first to balance fold sizes."""
    if k < 2:
        raise InputError(f"k-fold needs k >= 2, got {k}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(data.n, dtype=np.int64)
    if by_group:
        names = sorted(set(data.groups))
        if len(names) < k:
            raise InputError(f"{k}-fold by group needs at least {k} groups, found {len(names)}")
        sizes = {g: 0 for g in names}
        for g in data.groups:
            sizes[g] += 1
        rng.shuffle(names)
        names.sort(key=lambda g: -sizes[g])
        load = np.zeros(k)
        assign: dict[str, int] = {}
        for g in names:
            f = int(np.argmin(load))
            assign[g] = f
            load[f] += sizes[g]
        fold_of[:] = [assign[g] for g in data.groups]
    else:
        fold_of[rng.permutation(data.n)] = np.arange(data.n) % k
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


def concat(parts: Sequence[Outcomes]) -> Outcomes:
    """Rows of several outcome sets that name the same models (in any column order)."""
    if not parts:
        raise InputError("no outcomes to combine")
    first = parts[0]
    aligned = [first] + [p.select_models(first.models) for p in parts[1:]]
    units = {p.cost_unit for p in parts}
    if len(units) > 1:
        raise InputError(
            f"outcome files mix cost units {sorted(units)}: combine USD files or share files only"
        )
    responses = None
    if all(p.responses is not None for p in aligned):
        responses = tuple(r for p in aligned for r in p.responses or ())
    observed = None
    if any(p.observed is not None for p in aligned):
        observed = np.concatenate([p.mask for p in aligned])
    return Outcomes(
        prompts=tuple(x for p in aligned for x in p.prompts),
        models=first.models,
        scores=np.concatenate([p.scores for p in aligned]),
        costs=np.concatenate([p.costs for p in aligned]),
        groups=tuple(g for p in aligned for g in p.groups),
        responses=responses,
        cost_unit=first.cost_unit,
        sources=tuple(s for p in parts for s in p.sources),
        skipped=sum(p.skipped for p in parts),
        excluded=sum(p.excluded for p in parts),
        meta=dict(first.meta),
        observed=observed,
    )


def same_models(a: Outcomes, b: Outcomes, *, what: tuple[str, str] = ("train", "evaluation")) -> None:
    """Raise a clear error unless ``a`` and ``b`` name the same set of models."""
    if set(a.models) != set(b.models):
        only_a = sorted(set(a.models) - set(b.models))
        only_b = sorted(set(b.models) - set(a.models))
        raise InputError(
            f"{what[0]} and {what[1]} files name different models: only in {what[0]}: {only_a or '-'}; "
            f"only in {what[1]}: {only_b or '-'}. Use outcome files recorded for the same models."
        )


@dataclass(frozen=True, eq=False)
class RoutePlan:
    """One router configuration replayed on outcome rows: whose answer counts, and which models were paid.

    A plain router pays for one model per row; a cascade pays for every model it called.
    """

    label: str
    answer: np.ndarray  # (n,) index of the model whose answer is used
    paid: np.ndarray  # (n, m) bool: models called, and so paid for, on each row
    param: float = 0.0  # the router's cost parameter (λ, budget) that produced it

    @classmethod
    def single_call(cls, label: str, choice: np.ndarray, n_models: int, param: float = 0.0) -> RoutePlan:
        choice = np.asarray(choice, dtype=np.int64)
        paid = np.zeros((len(choice), n_models), dtype=bool)
        paid[np.arange(len(choice)), choice] = True
        return cls(label, choice, paid, param)

    def cost(self, data: Outcomes) -> float:
        return float((data.costs * self.paid).sum(axis=1).mean())

    def quality(self, data: Outcomes) -> float:
        return float(data.scores[np.arange(data.n), self.answer].mean())
