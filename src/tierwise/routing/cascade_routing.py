"""Cascade routing: buy a few cheap models' answers, then accept their vote or escalate, per prompt.

After Dekoninck et al. 2024 ("A Unified Approach to Routing and Cascading"): what to buy and whether to
escalate read both what the prompt looks like (the learned router's per-model predicted quality q̂,
lexical features) and what the cheap models answered (who agrees with the vote). A configuration is

- ``cheap``: the models whose answers are bought first (cheapest first, the best of them last); on
  prompts where q̂ of the best one is at least ``alone_at``, its answer is bought alone;
- a vote among the bought answers, each weighted by its model's q̂ on that prompt; the answer returned
  is that of the agreeing model predicted best, and the row's quality is that model's recorded score;
- a risk model: logistic regression for P(returned answer is right) on agreement features (+ q̂, + the
  lexical features), and one for lone answers;
- ``escalate``: the model asked when the escalation score (risk, or predicted gain of the escalation
  model over the accepted answer) clears ``threshold``; the row then pays the answers it bought *and* it.

Every setting (cheap set, lone-answer cut, features, escalation model, score, threshold) is chosen by
cross-validation inside the training rows; the evaluation rows' scores are never read (replay reads
prompts and the responses of the models a row paid for). ``assess`` is the one verdict replay and live
calls share: ``cascade_model`` saves one chosen plan (``CascadeRouting.choose``), ``cascade_live`` deploys
it behind the ``Router`` protocol.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tierwise.errors import InputError
from tierwise.routing.cascade_fit import answer_codes
from tierwise.routing.features import DEFAULT_FEATURES, embed, layout
from tierwise.routing.learned_model import LearnedModel
from tierwise.routing.learned_select import one_blas_thread
from tierwise.routing.outcomes import Outcomes, RoutePlan, fold_indices
from tierwise.routing.predictors import newton_logreg

FEATURE_SETS = ("agree", "agree+pred", "agree+pred+lex")
SCORES = ("risk", "gain")
# Shares of training rows escalated that the threshold grid is cut at (dense where budgets bind).
SHARES = np.r_[np.linspace(0.0, 0.3, 31), np.linspace(0.35, 1.0, 14)]
# Shares of training rows whose prompt makes the best cheap model trusted enough to answer alone.
ALONE_SHARES = (0.1, 0.2, 0.3, 0.4)
_C = {"agree": 1.0, "agree+pred": 1.0, "agree+pred+lex": 0.05}  # lexical columns need a firmer prior
_CHOICES = 4  # multiple choice: a model right with p outvotes chance when p > 1/_CHOICES


@dataclass
class RoutingPlan:
    """One configuration, fitted: which answers to buy, how to vote, when to escalate and to whom."""

    cheap: tuple[int, ...]  # model columns bought first: cheapest first, the best of them last
    escalate: int | None  # model column asked when the score clears ``threshold``; None: never
    features: str
    score: str
    threshold: float
    risk: dict[str, np.ndarray] = field(default_factory=dict)  # logistic regression; empty: never escalates
    expected_cost: float = 0.0
    expected_quality: float = 0.0
    # Rows whose prompt gives ``cheap[-1]`` (the best cheap model) a predicted quality >= ``alone_at``
    # buy its answer alone (no second opinion); ``risk_alone`` is their risk model.
    alone_at: float = np.inf
    risk_alone: dict[str, np.ndarray] = field(default_factory=dict)

    def label(self, models: Sequence[str]) -> str:
        short = [m.split("/")[-1] for m in models]
        names = "+".join(short[j] for j in self.cheap)
        if not self.cheap:
            return short[self.escalate or 0]
        if np.isfinite(self.alone_at):
            names += f" (alone when q̂ ≥ {self.alone_at:.3f})"
        if self.escalate is None:
            return names
        return f"{names} → {short[self.escalate]} ({self.features}, {self.score} > {self.threshold:.3f})"

    def alone(self, s: Signals) -> np.ndarray:
        """Rows that buy only the best cheap model's answer: the prompt router trusts it enough."""
        if len(self.cheap) < 2 or not np.isfinite(self.alone_at):
            return np.zeros(len(s.q), dtype=bool)
        return s.q[:, self.cheap[-1]] >= self.alone_at


@dataclass
class Signals:
    """What a configuration reads per row: the cheap models' answer codes and the prompt features."""

    codes: np.ndarray  # (n, m) answer codes (equal within a row = same answer)
    q: np.ndarray  # (n, m) learned router's predicted quality (out of fold on training rows)
    lex: np.ndarray  # (n, d) lexical features of the prompt


def vote(codes: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the returned model (position in the columns given), agreement bits, vote share.

    Each answer's support is the sum of its models' weights log((K−1)·q / (1−q)) (q: predicted quality on
    this prompt, K choices), floored near 0 so that a weak model never votes *against* an answer.
    The returned model is the agreeing one predicted best (ties: the later, costlier one).
    """
    p = np.clip(q, 0.02, 0.98)
    w = np.clip(np.log((_CHOICES - 1) * p / (1 - p)), 0.01, None)
    same = codes[:, :, None] == codes[:, None, :]
    support = (same * w[:, None, :]).sum(axis=2)
    win = np.argmax(support + 1e-9 * np.arange(codes.shape[1]), axis=1)
    rows = np.arange(len(codes))
    agree = same[rows, win, :]
    pick = np.argmax(np.where(agree, q + 1e-9 * np.arange(codes.shape[1]), -np.inf), axis=1)
    bits = (agree * (1 << np.arange(codes.shape[1]))).sum(axis=1)
    share = support[rows, win] / w.sum(axis=1)
    return pick, bits, share


def risk_features(s: Signals, cheap: Sequence[int], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(returned model column per row, feature matrix for the risk model of ``cheap`` / ``kind``)."""
    cols = list(cheap)
    pick, bits, share = vote(s.codes[:, cols], s.q[:, cols])
    returned = np.asarray(cols)[pick]
    k = len(cols)
    onehot = (bits[:, None] == np.arange((1 << k) - 1)[None, :]).astype(np.float64)  # all-agree: baseline
    distinct = np.array([len(set(r)) for r in s.codes[:, cols].tolist()], dtype=np.float64) / k
    parts = [onehot, share[:, None], distinct[:, None]]
    if "pred" in kind:
        rows = np.arange(len(returned))
        parts += [_logit(s.q[rows, returned])[:, None], _logit(s.q[:, cols].mean(axis=1))[:, None]]
    if "lex" in kind:
        parts.append(s.lex)
    return returned, np.hstack(parts)


@dataclass
class Verdict:
    """Per row, what ``plan`` concludes from the answers bought: the answer the vote returns (the lone
    answer where the best cheap model answers alone), P(that answer is right) and the escalation score
    (None when the plan never escalates), and whether the score clears the threshold."""

    answer: np.ndarray
    alone: np.ndarray
    escalated: np.ndarray
    p_right: np.ndarray | None = None
    score: np.ndarray | None = None


def assess(plan: RoutingPlan, s: Signals, features: tuple[np.ndarray, np.ndarray] | None = None) -> Verdict:
    """The verdict per row under ``plan``: reads the prompt features and the answers the row bought
    only (replay and the live router both decide through it). ``features``: ``risk_features(s,
    plan.cheap, plan.features)`` if known."""
    n = len(s.codes)
    if not plan.cheap:
        if plan.escalate is None:
            raise InputError("a cascade routing plan needs cheap models or a model to escalate to")
        return Verdict(np.full(n, plan.escalate), np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    returned, x = features or risk_features(s, plan.cheap, plan.features)
    alone = plan.alone(s)
    # Rows that bought one answer: the vote over unbought answers is computed but never used.
    returned = np.where(alone, plan.cheap[-1], returned)
    if plan.escalate is None or not plan.risk:
        return Verdict(returned, alone, np.zeros(n, dtype=bool))
    p_right = _predict(plan.risk, x)
    if alone.any():
        _, x1 = risk_features(s, plan.cheap[-1:], plan.features)
        p_right = np.where(alone, _predict(plan.risk_alone, x1), p_right)
    score = _score(plan.score, p_right, s.q[:, plan.escalate])
    return Verdict(returned, alone, score > plan.threshold, p_right, score)


def decide(
    plan: RoutingPlan, s: Signals, features: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(answer column, escalated, alone) per row under ``plan``: reads the prompt features and the
    answers the row bought only. ``features``: ``risk_features(s, plan.cheap, plan.features)`` if known."""
    v = assess(plan, s, features)
    if plan.escalate is None:
        return v.answer, v.escalated, v.alone
    return np.where(v.escalated, plan.escalate, v.answer), v.escalated, v.alone


def p_right_needed(plan: RoutingPlan, q_escalate: float) -> float:
    """The P(returned answer right) below which a prompt escalates: ``plan.threshold`` read as a floor on
    the risk model's confidence (risk: 1 − threshold; gain: the escalation model's q̂ − threshold)."""
    return 1.0 - plan.threshold if plan.score == "risk" else q_escalate - plan.threshold


def to_route_plan(
    plan: RoutingPlan,
    s: Signals,
    models: Sequence[str],
    features: tuple[np.ndarray, np.ndarray] | None = None,
) -> RoutePlan:
    """The replayed rows: whose answer counts, and which models each row paid for."""
    answer, escalated, alone = decide(plan, s, features)
    paid = np.zeros((len(answer), len(models)), dtype=bool)
    # Every cheap answer is bought before the decision; rows that trust the best cheap model buy it alone.
    paid[:, list(plan.cheap)] = ~alone[:, None]
    if plan.cheap:
        paid[:, plan.cheap[-1]] = True
    if plan.escalate is not None:
        paid[:, plan.escalate] |= escalated
    return RoutePlan(plan.label(models), answer.astype(np.int64), paid, plan.expected_cost)


@dataclass
class CascadeRouting:
    """A family of fitted configurations, cheap to expensive, each the best found for its budget."""

    models: tuple[str, ...]
    learned: LearnedModel
    plans: list[RoutingPlan]
    lex_cols: tuple[int, int]
    best_quality: float = float("nan")  # the best single model's mean quality on the training rows

    def choose(self, target_cost: float | None = None) -> RoutingPlan:
        """The plan to deploy: the best expected quality within ``target_cost`` per call (in the training
        data's cost unit), else the cheapest plan expected to match the best single model's quality."""
        if target_cost is not None:
            within = [p for p in self.plans if p.expected_cost <= target_cost * (1 + 1e-9)]
            if not within:
                raise InputError(
                    f"no cascade+ plan fits a mean cost of {target_cost:g} per call; "
                    f"the cheapest expects {min(p.expected_cost for p in self.plans):g}"
                )
            return max(within, key=lambda p: (p.expected_quality, -p.expected_cost))
        good = [p for p in self.plans if p.expected_quality >= self.best_quality - 1e-12]
        if not good:  # only when best_quality is unknown: the best plan
            return max(self.plans, key=lambda p: (p.expected_quality, -p.expected_cost))
        return min(good, key=lambda p: p.expected_cost)

    def signals(self, data: Outcomes, x: np.ndarray | None = None) -> Signals:
        x = self.learned.features(data.prompts) if x is None else x
        lo, hi = self.lex_cols
        return Signals(answer_codes(data), self.learned.predict(x), x[:, lo:hi])

    def replay(self, data: Outcomes) -> list[RoutePlan]:
        """One ``RoutePlan`` per configuration; reads prompts and responses, never ``data.scores``."""
        s = self.signals(data)
        cache: dict[tuple[tuple[int, ...], str], tuple[np.ndarray, np.ndarray]] = {}
        out = []
        for p in self.plans:
            key = (p.cheap, p.features)
            if p.cheap and key not in cache:
                cache[key] = risk_features(s, p.cheap, p.features)
            out.append(to_route_plan(p, s, data.models, cache.get(key)))
        return out


def fit_cascade_routing(
    data: Outcomes,
    *,
    embedder: str = DEFAULT_FEATURES,
    max_cheap: int = 2,
    candidates: int = 6,
    folds: int = 4,
    seed: int = 0,
    budgets: int = 60,
    repeats: int = 2,
) -> CascadeRouting:
    """Fit on ``data`` only: the learned router, then every (cheap set, features, escalation model,
    score, threshold) measured out of fold on ``data``; for each budget the best is kept."""
    if data.partial or data.responses is None:
        raise InputError(
            "cascade routing replays recorded responses and needs every model scored on every row"
        )
    view = layout(embedder)
    lex_name = next((v for v in ("lex2", "lex") if v in view), None)
    if lex_name is None:
        raise InputError(
            f"cascade routing reads lexical features: use an embedder with lex2, not {embedder!r}"
        )
    x = embed(list(data.prompts), embedder)
    learned = LearnedModel.fit(data, embedder=embedder, seed=seed, features=x)
    lo, hi = view[lex_name]
    s = Signals(answer_codes(data), learned.calib_q.astype(np.float64), x[:, lo:hi])
    q, c = data.mean_quality(), data.mean_cost()
    top = data.strongest()
    by_quality = [int(j) for j in np.argsort(-q, kind="stable")]
    cheap_pool = [int(j) for j in np.argsort(c) if j != top and c[j] < 0.5 * c[top]][:candidates]
    k = max(2, min(folds, data.n // 20))
    # Two partitions into folds: which rows share a fold moves the measured (cost, quality) of a
    # threshold enough to change which configuration wins a budget.
    partitions = [fold_indices(data, k, seed=seed + r) for r in range(repeats)]
    rows = np.arange(data.n)
    cache: dict[tuple[tuple[int, ...], str], tuple[np.ndarray, np.ndarray]] = {}

    def out_of_fold(cheap: tuple[int, ...], kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(score of the returned answer, out-of-fold P(right) per partition) for ``cheap``/``kind``."""
        if (cheap, kind) not in cache:
            returned, feats = risk_features(s, cheap, kind)
            right = data.scores[rows, returned]
            oof = np.zeros((len(partitions), data.n))
            for r, splits in enumerate(partitions):
                for train_idx, test_idx in splits:
                    arrays = fit_risk(feats[train_idx], right[train_idx], _C[kind])
                    oof[r, test_idx] = _predict(arrays, feats[test_idx])
            cache[cheap, kind] = right, oof
        return cache[cheap, kind]

    configs: list[tuple[RoutingPlan, float, float]] = []  # plan (unfitted risk), cost, quality
    for j in range(len(data.models)):  # each model alone
        configs.append((RoutingPlan((), j, "", "", -np.inf), float(c[j]), float(q[j])))
    with one_blas_thread():
        for size in range(1, max_cheap + 1):
            for combo in itertools.combinations(cheap_pool, size):
                # Cheapest first, but the best (by training quality) last: it answers alone when trusted.
                best = max(combo, key=lambda j: (q[j], -c[j]))
                others = sorted((j for j in combo if j != best), key=lambda j: c[j])
                cheap = (*others, best)
                # Escalate to the best model, or to the runner-up when it is cheaper: both compete.
                targets = [e for e in by_quality[:2] if e not in cheap]
                configs += _configs(data, s, cheap, targets, out_of_fold)
        chosen = _frontier(configs, c, budgets)
        fitted: dict[tuple[tuple[int, ...], str], dict[str, np.ndarray]] = {}

        def refit(cheap: tuple[int, ...], kind: str) -> dict[str, np.ndarray]:
            """The risk model on every training row; the threshold stays the cross-validated one."""
            if (cheap, kind) not in fitted:
                returned, feats = risk_features(s, cheap, kind)
                fitted[cheap, kind] = fit_risk(feats, data.scores[rows, returned], _C[kind])
            return fitted[cheap, kind]

        plans = []
        for plan, cost, quality in chosen:
            if plan.cheap and plan.escalate is not None:
                plan.risk = refit(plan.cheap, plan.features)
                if np.isfinite(plan.alone_at):
                    plan.risk_alone = refit(plan.cheap[-1:], plan.features)
            plan.expected_cost, plan.expected_quality = cost, quality
            plans.append(plan)
    plans.sort(key=lambda p: p.expected_cost)
    return CascadeRouting(data.models, learned, plans, (lo, hi), float(q.max()))


def _configs(
    data: Outcomes,
    s: Signals,
    cheap: tuple[int, ...],
    targets: Sequence[int],
    out_of_fold: Callable[[tuple[int, ...], str], tuple[np.ndarray, np.ndarray]],
) -> list[tuple[RoutingPlan, float, float]]:
    """Every (share answered by the best cheap model alone, features, escalation model, score,
    threshold) for ``cheap``, with its cost and quality measured out of fold."""
    best = cheap[-1]
    full_cost = data.costs[:, list(cheap)].sum(axis=1)
    levels = [np.inf]
    if len(cheap) > 1:  # prompt-only trust in the best cheap model: skip the second opinion
        levels += [float(np.quantile(s.q[:, best], 1.0 - share)) for share in ALONE_SHARES]
    out = []
    for kind in FEATURE_SETS:
        right_all, oof_all = out_of_fold(cheap, kind)
        right_one, oof_one = out_of_fold(cheap[-1:], kind)
        for at in levels:
            alone = s.q[:, best] >= at
            right = np.where(alone, right_one, right_all)
            oof = np.where(alone[None, :], oof_one, oof_all)
            base_cost = np.where(alone, data.costs[:, best], full_cost)
            if kind == FEATURE_SETS[0]:  # never escalating does not depend on the risk features
                plan = RoutingPlan(cheap, None, "", "", np.inf, alone_at=at)
                out.append((plan, float(base_cost.mean()), float(right.mean())))
            for e in targets:
                for how in SCORES:
                    score = _score(how, oof, s.q[None, :, e])
                    for tau in _thresholds(score[0]):
                        esc = score > tau
                        cost = float((base_cost + esc * data.costs[:, e]).mean())
                        quality = float(np.where(esc, data.scores[:, e], right).mean())
                        out.append((RoutingPlan(cheap, e, kind, how, tau, alone_at=at), cost, quality))
    return out


def _frontier(
    configs: list[tuple[RoutingPlan, float, float]], costs: np.ndarray, budgets: int
) -> list[tuple[RoutingPlan, float, float]]:
    """For budgets from the cheapest configuration to the costliest model, the best within each."""
    cost = np.array([cfg[1] for cfg in configs])
    quality = np.array([cfg[2] for cfg in configs])
    low, high = float(cost.min()), float(costs.max())
    # Geometric steps span the range; linear ones in % of the costliest model cover where budgets bind.
    grid = np.unique(np.r_[np.geomspace(max(low, 1e-12), high, budgets), np.linspace(0.01, 1, 100) * high])
    picked: list[int] = []
    for budget in grid[grid >= low]:
        ok = np.flatnonzero(cost <= budget * (1 + 1e-9))
        best = int(ok[np.lexsort((cost[ok], -quality[ok]))[0]])
        if best not in picked:
            picked.append(best)
    return [configs[i] for i in picked]


def _thresholds(score: np.ndarray) -> list[float]:
    """Score thresholds that escalate each share of ``SHARES`` of these rows (inf: none)."""
    out = {float(np.inf)}
    for share in SHARES[1:]:
        out.add(float(np.quantile(score, 1.0 - share, method="higher")) - 1e-12)
    return sorted(out)


def _score(how: str, p_right: np.ndarray, q_escalate: np.ndarray) -> np.ndarray:
    """Escalation priority: the accepted answer's risk, or the escalation model's predicted gain."""
    return 1.0 - p_right if how == "risk" else q_escalate - p_right


def fit_risk(x: np.ndarray, y: np.ndarray, c: float) -> dict[str, np.ndarray]:
    """L2 logistic regression of ``y`` (0/1 or soft) on standardized ``x`` (``newton_logreg``).

    Agreement patterns are one-hot and some are always right in training, so an unpenalized intercept
    with collinear columns can run off to infinity: the intercept gets a light penalty too.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-8] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    d = z.shape[1]
    penalty = np.eye(d) / c
    penalty[-1, -1] = 1e-3
    p0 = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    w = np.zeros(d)
    w[-1] = np.log(p0 / (1 - p0))
    w = newton_logreg(z, y, penalty, w)
    return {"mean": mean, "scale": scale, "coef": w[:-1], "intercept": np.array(w[-1])}


def _predict(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    t = ((x - arrays["mean"]) / arrays["scale"]) @ arrays["coef"] + arrays["intercept"]
    return 1.0 / (1.0 + np.exp(-np.clip(t, -30, 30)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))
