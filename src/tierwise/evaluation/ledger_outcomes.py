"""Outcomes recorded in the ledger: shadow checks (and their judge scores) as training rows.

A shadow record (a call with ``operation = "shadow"``) holds one prompt answered by two models: the model
the router picked (``metadata.routed_model``, what it cost in ``metadata.routed_cost_usd``) and the large
model (the record itself). Its scores come from the shadow's judge when ``[shadow] judge = true``
(``routed_score``, ``large_score``), else from agreement: the large answer is the reference (1) and the
routed answer scores 1 when it agreed, 0 when not, RouteLLM's "is the weak answer as good as the strong
one" label. Rows go into the same ``Outcomes`` shape the CSV loaders produce.

With three tiers, nano-routed rows score nano and large, mini-routed rows mini and large: one outcome set
over all three models whose rows are partial (``Outcomes.observed``), so the router learns every tier.

Rows that cannot be used are counted by reason, never silently dropped: prompt not stored (the ledger
keeps prompts only with ``[ledger] store_prompts = true``), cost unknown, no judge score (when judge scores
are required), another large model than the one trained on, or a routed model with too few rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tierwise.errors import InputError
from tierwise.ledger.records import CallRecord
from tierwise.routing.outcomes import Outcomes

ScoreSource = Literal["auto", "judge", "agreement"]
MIN_ROWS = 10  # fewer rows cannot be cross-validated into a predictor choice
MIN_MODEL_ROWS = 5  # a routed model scored on fewer rows has nothing to learn from


@dataclass(slots=True)
class _Row:
    prompt: str
    routed: str
    large: str
    scores: tuple[float, float]  # routed, large
    costs: tuple[float, float]
    group: str
    judged: bool


@dataclass(frozen=True, slots=True)
class LedgerOutcomes:
    """The outcomes built from the ledger and what was left out, by reason."""

    outcomes: Outcomes
    skipped: dict[str, int] = field(default_factory=dict)
    score_source: str = "agreement"


def prompt_text(stored: str | None) -> str | None:
    """The task text from a stored prompt (the messages as JSON): its non-system contents, joined.

    That is ``Task.text`` for a plain-string task (one user message), which is what routers read.
    """
    if not stored:
        return None
    try:
        messages = json.loads(stored)
    except json.JSONDecodeError:
        return stored  # stored as plain text by an older writer
    if not isinstance(messages, list):
        return None
    parts = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") != "system" and isinstance(m.get("content"), str):
            parts.append(m["content"])
    return "\n".join(parts) or None


def _row(call: CallRecord, source: ScoreSource, skipped: Counter[str]) -> _Row | None:
    meta = call.metadata or {}
    text = prompt_text(call.prompt)
    if text is None:
        skipped["prompt not stored"] += 1
        return None
    routed = meta.get("routed_model")
    if not routed or routed == call.model:
        skipped["no routed model"] += 1
        return None
    routed_cost = meta.get("routed_cost_usd")
    if routed_cost is None or call.cost_usd is None:
        skipped["cost unknown"] += 1
        return None
    judged = "routed_score" in meta and "large_score" in meta
    if source == "judge" or (source == "auto" and judged):
        if not judged:
            skipped["no judge score"] += 1
            return None
        scores, judged = (float(meta["routed_score"]), float(meta["large_score"])), True
    else:
        scores, judged = (1.0 if meta.get("agree") else 0.0, 1.0), False
    costs = (float(routed_cost), call.cost_usd)
    return _Row(text, str(routed), call.model, scores, costs, call.task_kind, judged)


def outcomes_from_calls(
    calls: Iterable[CallRecord],
    *,
    models: Sequence[str] | None = None,
    score: ScoreSource = "auto",
    min_rows: int = MIN_ROWS,
) -> LedgerOutcomes:
    """Outcome rows from the ledger's shadow records, over every routed model and the large one.

    Rows whose models are all in ``models`` (without it: rows of the most common large model) are kept;
    a routed model with fewer than ``MIN_MODEL_ROWS`` rows is left out. Two models give full rows; more
    give partial rows, each scoring its routed model and the large one. ``score="auto"`` uses judge scores
    where the shadow recorded them and agreement elsewhere; ``"judge"`` keeps judged rows only.
    """
    if score not in ("auto", "judge", "agreement"):
        raise InputError(f"score source {score!r} is not one of auto, judge, agreement")
    if models is not None and len(set(models)) < 2:
        raise InputError(
            "ledger outcomes pair routed models with the large one: pass at least two models, "
            f"got {list(models)}"
        )
    skipped: Counter[str] = Counter()
    rows: list[_Row] = []
    shadows = 0
    for call in calls:
        if call.operation != "shadow" or call.status != "ok":
            continue
        shadows += 1
        row = _row(call, score, skipped)
        if row is not None:
            rows.append(row)
    if shadows == 0:
        raise InputError(
            "the ledger holds no shadow checks to train on: set [shadow] share = 0.05 (and "
            "[ledger] store_prompts = true) in tierwise.toml, run traffic, then train again"
        )
    kept = _select(rows, models, skipped, min(MIN_MODEL_ROWS, min_rows))
    if len(kept) < min_rows:
        why = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common()) or "none skipped"
        fix = (
            "set [ledger] store_prompts = true so shadow records keep their prompts"
            if skipped.get("prompt not stored")
            else "record more shadow checks ([shadow] share) before training"
        )
        which = " and ".join(sorted(models)) if models else "any models"
        raise InputError(
            f"the ledger has {len(kept)} usable shadow outcome(s) for {which} ({shadows} shadow "
            f"records; skipped: {why}); training needs at least {min_rows}: {fix}"
        )
    return _outcomes(kept, skipped)


def _select(
    rows: list[_Row], models: Sequence[str] | None, skipped: Counter[str], min_model_rows: int
) -> list[_Row]:
    if models is not None:
        wanted = set(models)
        kept = [r for r in rows if r.routed in wanted and r.large in wanted]
        if len(rows) > len(kept):
            skipped["other models"] += len(rows) - len(kept)
    else:
        large = Counter(r.large for r in rows).most_common(1)
        kept = [r for r in rows if large and r.large == large[0][0]]
        if len(rows) > len(kept):
            skipped["other large model"] += len(rows) - len(kept)
    per_model = Counter(r.routed for r in kept)
    few = {m for m, n in per_model.items() if n < min_model_rows}
    if few:
        skipped[f"fewer than {min_model_rows} rows for the routed model"] += sum(per_model[m] for m in few)
    return [r for r in kept if r.routed not in few]


def _outcomes(kept: list[_Row], skipped: Counter[str]) -> LedgerOutcomes:
    large = kept[0].large
    routed_cost: dict[str, list[float]] = {}
    for r in kept:
        routed_cost.setdefault(r.routed, []).append(r.costs[0])
    # Cheapest routed model first, the large model last: the order tiers are tried in.
    order = (*sorted(routed_cost, key=lambda m: (float(np.mean(routed_cost[m])), m)), large)
    n, m = len(kept), len(order)
    scores = np.zeros((n, m))
    costs = np.zeros((n, m))
    observed = np.zeros((n, m), dtype=bool)
    for i, r in enumerate(kept):
        for j, name in enumerate((r.routed, r.large)):
            col = order.index(name)
            scores[i, col] = r.scores[j]
            costs[i, col] = r.costs[j]
            observed[i, col] = True
    n_judged = sum(r.judged for r in kept)
    source = "judge" if n_judged == len(kept) else "agreement" if n_judged == 0 else "judge+agreement"
    outcomes = Outcomes(
        prompts=tuple(r.prompt for r in kept),
        models=order,
        scores=np.clip(scores, 0.0, 1.0),
        costs=costs,
        groups=tuple(r.group for r in kept),
        sources=("ledger",),
        skipped=sum(skipped.values()),
        meta={"strong": large},
        observed=None if observed.all() else observed,
    )
    return LedgerOutcomes(outcomes, dict(skipped), source)
