"""Training cascades on outcome data, and replaying them on recorded responses.

A cascade family is a set of (chain, τ) configurations, each chosen on cross-validated training data as
the best quality for a budget; sweeping the budget gives the cascade's cost–quality frontier. In replay a
row pays for every model up to the one whose answer is accepted, and decisions read only the recorded
responses of those models, never a score column.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from tierwise.errors import InputError
from tierwise.routing.cascade import CascadePlan, normalize_answer
from tierwise.routing.outcomes import Outcomes, RoutePlan, fold_indices

TAUS = np.r_[np.linspace(0.0, 0.9, 19), np.linspace(0.91, 0.995, 18)]
_SMOOTH = 2.0  # pseudo-counts at the step's base rate for rarely seen agreement patterns


def answer_codes(data: Outcomes) -> np.ndarray:
    """(n, m) integer codes of the normalized recorded answers; equal codes in a row = same answer."""
    if data.responses is None:
        raise InputError(
            "the cascade replays recorded responses, and these outcomes have none "
            "(RouterBench files carry <model>|model_response columns; RouteLLM MMLU files do not)"
        )
    codes = np.zeros((data.n, len(data.models)), dtype=np.int64)
    for i, row in enumerate(data.responses):
        seen: dict[str, int] = {}
        for j, text in enumerate(row):
            codes[i, j] = seen.setdefault(normalize_answer(text), len(seen))
    return codes


@dataclass
class CascadeFamily:
    """Cascade configurations from cheap to expensive, each the best found for its budget."""

    models: tuple[str, ...]
    plans: list[CascadePlan]

    def replay(self, data: Outcomes, codes: np.ndarray | None = None) -> list[RoutePlan]:
        codes = answer_codes(data) if codes is None else codes
        return [replay_plan(p, data, codes) for p in self.plans]

    def at_budget(self, cost: float) -> CascadePlan:
        """The plan with the best expected quality whose expected cost per call is within ``cost``."""
        within = [p for p in self.plans if p.expected_cost <= cost * (1 + 1e-9)]
        if not within:
            raise InputError(
                f"no cascade fits a budget of {cost:g} per call; "
                f"the cheapest expects {self.plans[0].expected_cost:g}"
            )
        return max(within, key=lambda p: (p.expected_quality, -p.expected_cost))


def replay_plan(plan: CascadePlan, data: Outcomes, codes: np.ndarray) -> RoutePlan:
    """Run ``plan`` on every row: which model's answer is used and which models were paid for."""
    chain = [data.model_index(m) for m in plan.chain]
    n = data.n
    accepted = np.full(n, len(chain) - 1)
    winner = np.zeros((n, len(chain)), dtype=np.int64)
    open_rows = np.ones(n, dtype=bool)
    for t in range(len(chain)):
        best, bits = _vote(codes[:, chain[: t + 1]], np.asarray(plan.weights[: t + 1]))
        winner[:, t] = best
        if t < len(chain) - 1:
            ok = open_rows & (np.asarray(plan.tables[t])[bits] >= plan.tau)
            accepted[ok] = t
            open_rows &= ~ok
    rows = np.arange(n)
    answer = np.asarray(chain)[winner[rows, accepted]]
    paid = np.zeros((n, len(data.models)), dtype=bool)
    for t, j in enumerate(chain):
        paid[:, j] = accepted >= t  # every model up to the accepting one was called and is paid for
    label = " → ".join(plan.chain) + (f" τ={plan.tau:.3f}" if len(chain) > 1 else "")
    return RoutePlan(label=label, answer=answer, paid=paid, param=plan.expected_cost)


def fit_cascades(
    data: Outcomes, *, max_cheap: int = 3, folds: int = 4, seed: int = 0, budgets: int = 40
) -> CascadeFamily:
    """Chains = the strongest model preceded by up to ``max_cheap`` cheaper ones (cheapest first).

    Each chain's confidence tables are fit on training folds and its (cost, quality) per τ measured on
    the held-out fold; then, for budgets from the cheapest model to the costliest, the best configuration
    within each budget is kept and refit on all of ``data``.
    """
    codes = answer_codes(data)
    q, c = data.mean_quality(), data.mean_cost()
    top = data.strongest()
    weights = np.log(np.clip(q, 0.01, 0.99) / (1 - np.clip(q, 0.01, 0.99)))
    # Models at most half the strongest one's cost; the eight cheapest keep the search small.
    cheap = [int(j) for j in np.argsort(c) if j != top and c[j] < 0.5 * c[top]][:8]
    chains: list[tuple[int, ...]] = [(j,) for j in range(len(data.models))]
    for size in range(1, max_cheap + 1):
        for combo in itertools.combinations(cheap, size):
            chains.append((*sorted(combo, key=lambda j: c[j]), top))
    splits = fold_indices(data, max(2, min(folds, data.n // 20)), seed=seed)
    configs: list[tuple[tuple[int, ...], float, float, float]] = []  # chain, tau, cost, quality
    for chain in chains:
        if len(chain) == 1:
            j = chain[0]
            configs.append((chain, 1.0, float(c[j]), float(q[j])))
            continue
        total = np.zeros((len(TAUS), 2))
        for train_idx, test_idx in splits:
            tables = _fit_tables(data, codes, train_idx, chain, weights)
            total += _sweep(data, codes, test_idx, chain, weights, tables) * len(test_idx)
        total /= data.n
        configs.extend((chain, float(tau), total[k, 0], total[k, 1]) for k, tau in enumerate(TAUS))
    chosen: list[tuple[tuple[int, ...], float, float, float]] = []
    low = min(cfg[2] for cfg in configs)
    for budget in np.geomspace(max(low, 1e-12), max(float(c.max()), low * 1.0001), budgets):
        fit = [cfg for cfg in configs if cfg[2] <= budget * (1 + 1e-9)]
        best = max(fit, key=lambda cfg: (cfg[3], -cfg[2]))
        if best not in chosen:
            chosen.append(best)
    everyone = np.arange(data.n)
    plans = []
    for chain, tau, cost, quality in chosen:
        tables = _fit_tables(data, codes, everyone, chain, weights)
        plans.append(
            CascadePlan(
                chain=tuple(data.models[j] for j in chain),
                weights=tuple(float(weights[j]) for j in chain),
                tables=tuple(tuple(float(p) for p in t) for t in tables),
                tau=tau,
                expected_cost=cost,
                expected_quality=quality,
            )
        )
    plans.sort(key=lambda p: p.expected_cost)
    return CascadeFamily(models=data.models, plans=plans)


def _vote(codes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the position of the winning answer among the paid models, and the agreement bits."""
    same = codes[:, :, None] == codes[:, None, :]  # same[i, a, b]: models a and b answered alike
    support = (same * weights[None, None, :]).sum(axis=2) + 1e-9 * np.arange(codes.shape[1])
    best = np.argmax(support, axis=1)  # ties go to the later (stronger) model
    agree = same[np.arange(len(codes)), best, :]
    bits = (agree * (1 << np.arange(codes.shape[1]))).sum(axis=1)
    return best, bits


def _fit_tables(
    data: Outcomes, codes: np.ndarray, rows: np.ndarray, chain: tuple[int, ...], weights: np.ndarray
) -> list[np.ndarray]:
    """P(winning answer is right | agreement pattern) per step, from training rows (scores are labels)."""
    tables = []
    for t in range(len(chain) - 1):
        paid = list(chain[: t + 1])
        best, bits = _vote(codes[np.ix_(rows, paid)], weights[paid])
        right = data.scores[rows, np.asarray(paid)[best]]
        prior = float(right.mean()) if len(right) else 0.5
        size = 1 << (t + 1)
        count = np.bincount(bits, minlength=size)
        hits = np.bincount(bits, weights=right, minlength=size)
        tables.append((hits + _SMOOTH * prior) / (count + _SMOOTH))
    return tables


def _sweep(
    data: Outcomes,
    codes: np.ndarray,
    rows: np.ndarray,
    chain: tuple[int, ...],
    weights: np.ndarray,
    tables: list[np.ndarray],
) -> np.ndarray:
    """(len(TAUS), 2) mean cost and quality of ``chain`` on ``rows`` for every τ."""
    length = len(chain)
    conf = np.full((len(rows), length), np.inf)  # the last step always accepts
    winner = np.zeros((len(rows), length), dtype=np.int64)
    for t in range(length):
        paid = list(chain[: t + 1])
        best, bits = _vote(codes[np.ix_(rows, paid)], weights[paid])
        winner[:, t] = np.asarray(paid)[best]
        if t < length - 1:
            conf[:, t] = tables[t][bits]
    spent = np.cumsum(data.costs[np.ix_(rows, list(chain))], axis=1)
    r = np.arange(len(rows))
    out = np.zeros((len(TAUS), 2))
    for k, tau in enumerate(TAUS):
        step = np.argmax(conf >= tau, axis=1)
        out[k] = spent[r, step].mean(), data.scores[rows[r], winner[r, step]].mean()
    return out
