"""Spend of a run from its call records: total, per tier, per step, and the all-large counterfactual (the
same tokens priced at the large tier's model). The one spend path: ``Scope.spend`` and every system use it.
"""

from __future__ import annotations

from collections.abc import Sequence

from tierwise.core import Usage
from tierwise.ledger.records import CallRecord
from tierwise.models.spec import ModelSpec


def spend_summary(calls: Sequence[CallRecord], large: ModelSpec | None) -> dict[str, object]:
    """Total, per tier, per step and the all-large counterfactual of a run's calls (USD)."""
    total = 0.0
    unknown = False
    notional = False
    per_tier: dict[str, float] = {}
    per_step: dict[str, float] = {}
    counterfactual: float | None = 0.0
    for c in calls:
        notional = notional or c.notional
        cost = c.cost_usd
        if cost is None:
            unknown = True
        else:
            total += cost
            per_tier[c.tier] = per_tier.get(c.tier, 0.0) + cost
            if c.step_id:
                per_step[c.step_id] = per_step.get(c.step_id, 0.0) + cost
        if counterfactual is None:
            continue
        if c.operation == "embed" or large is None:
            counterfactual = None if cost is None else counterfactual + cost
            continue
        usage = Usage(
            input_tokens=c.input_tokens,
            cached_input_tokens=c.cached_input_tokens,
            output_tokens=c.output_tokens,
        )
        at_large = large.cost(usage)
        counterfactual = None if at_large is None else counterfactual + at_large
    return {
        "total_cost_usd": None if unknown and not total else round(total, 8),
        "cost_unknown_for_some_calls": unknown,
        "notional": notional,
        "cost_per_tier": {k: round(v, 8) for k, v in per_tier.items()},
        "cost_per_step": {k: round(v, 8) for k, v in per_step.items()},
        "all_large_counterfactual_usd": None if counterfactual is None else round(counterfactual, 8),
        "calls": len(calls),
    }
