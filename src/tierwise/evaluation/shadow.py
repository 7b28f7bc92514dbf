"""Where does routing look wrong? Aggregating the ledger's shadow checks by task kind and routed tier."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tierwise.ledger.records import CallRecord


@dataclass(slots=True)
class _Group:
    routed: int = 0  # accepted routed calls of this kind and tier
    escalated: int = 0  # of those, how many needed escalation
    shadowed: int = 0
    agreed: int = 0
    shadow_cost: float = 0.0
    agreement_sum: float = 0.0
    models: set[str] = field(default_factory=set)


def shadow_report(calls: Iterable[CallRecord], *, alarm_disagreement: float = 0.25) -> dict[str, Any]:
    """Per (kind, tier): shadow agreement, escalation rate and shadow cost; alarms past the threshold."""
    groups: dict[tuple[str, str], _Group] = defaultdict(_Group)
    for c in calls:
        meta = c.metadata or {}
        if c.operation == "shadow":
            g = groups[(c.task_kind, str(meta.get("routed_tier", "?")))]
            g.shadowed += 1
            g.agreed += bool(meta.get("agree"))
            g.agreement_sum += float(meta.get("agreement", 0.0))
            g.shadow_cost += c.cost_usd or 0.0
            g.models.add(str(meta.get("routed_model", "?")))
        elif c.operation == "judge" and meta.get("shadow"):
            # The judge's verdict lands on its shadow record; its cost is shadow cost all the same.
            key = (str(meta.get("routed_kind") or c.task_kind), str(meta.get("routed_tier", "?")))
            groups[key].shadow_cost += c.cost_usd or 0.0
        elif c.operation in ("chat", "stream") and c.status == "ok":
            g = groups[(c.task_kind, c.tier)]
            g.routed += 1
            g.escalated += int(meta.get("escalations", 0) or 0) > 0
    rows = []
    for (kind, tier), g in sorted(groups.items()):
        if tier == "large" and not g.shadowed:
            continue  # large calls are the reference: nothing to shadow
        disagreement = None if not g.shadowed else 1 - g.agreed / g.shadowed
        rows.append(
            {
                "kind": kind,
                "tier": tier,
                "routed_calls": g.routed,
                "escalation_rate": round(g.escalated / g.routed, 4) if g.routed else None,
                "shadowed": g.shadowed,
                "agreement_rate": None if disagreement is None else round(1 - disagreement, 4),
                "mean_agreement": round(g.agreement_sum / g.shadowed, 4) if g.shadowed else None,
                "shadow_cost_usd": round(g.shadow_cost, 8),
                "alarm": disagreement is not None and disagreement > alarm_disagreement,
                "models": sorted(g.models),
            }
        )
    total = sum(r["shadowed"] for r in rows)
    agreed = sum(round((r["agreement_rate"] or 0) * r["shadowed"]) for r in rows)
    return {
        "alarm_disagreement": alarm_disagreement,
        "shadowed": total,
        "agreement_rate": round(agreed / total, 4) if total else None,
        "shadow_cost_usd": round(sum(r["shadow_cost_usd"] for r in rows), 8),
        "alarms": [f"{r['kind']}@{r['tier']}" for r in rows if r["alarm"]],
        "groups": rows,
    }
