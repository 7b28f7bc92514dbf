"""The dashboard's reads: spend over time by a key with the all-large counterfactual, totals, recent runs,
one run's step tree, and routing health (shadow agreement, alarms, open circuit breakers).

Synchronous SQLAlchemy Core on the Ledger's engine (SQLite or PostgreSQL); the async server runs these in
a thread. Everything returned is JSON-ready; prompts and outputs are never part of it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from tierwise.core import Usage
from tierwise.errors import InputError
from tierwise.ledger import schema
from tierwise.ledger.queries import TOKEN_COLUMNS
from tierwise.ledger.records import CallRecord, RunRecord, StepRecord, utcnow
from tierwise.ledger.store import Ledger
from tierwise.models.spec import ModelSpec

GroupBy = Literal["tier", "model", "kind", "key"]
GROUPS: tuple[str, ...] = ("tier", "model", "kind", "key")
NO_KEY = "—"  # runs without an API key (CLI, systems) group under this
# Ranges the page offers; "all" spans the ledger's first to last call.
RANGES: dict[str, timedelta | None] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "all": None,
}
BUCKETS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
ALARM_DISAGREEMENT = 0.25
ALARM_MIN_CHECKS = 5
PLAN_STEP = "__plan__"  # orchestration's planning step (tierwise.orchestration.plan.PLAN_STEP)


def bucket_for(span: timedelta) -> str:
    """Minute buckets up to 3 hours, hours up to 3 days, days beyond: at most ~180 points on the chart."""
    if span <= timedelta(hours=3):
        return "minute"
    if span <= timedelta(days=3):
        return "hour"
    return "day"


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime
    until: datetime
    bucket: str

    @property
    def bucket_s(self) -> int:
        return BUCKETS[self.bucket]


def _epoch(dialect: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """Seconds since 1970 (UTC) of a timestamp column, as an integer, on either backend."""
    if dialect == "sqlite":  # stored as naive UTC text, which strftime('%s') reads as UTC
        return sa.cast(sa.func.strftime("%s", column), sa.Integer)
    return sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger)


def _bucket(dialect: str, column: sa.ColumnElement[Any], size: int) -> sa.ColumnElement[Any]:
    return (_epoch(dialect, column) // size) * size  # integer division: epochs are positive


class DashboardQueries:
    """Read-only queries over one Ledger, priced against the large tier's model for the counterfactual."""

    def __init__(self, ledger: Ledger, large: ModelSpec | None) -> None:
        self.ledger = ledger
        self.large = large
        self.dialect = ledger.url.get_backend_name()

    def _select(self, stmt: sa.Select[Any]) -> list[sa.RowMapping]:
        return self.ledger._select(stmt)  # flushes first: the page sees calls just recorded

    # ---- time ----

    def window(self, range_name: str, *, now: datetime | None = None) -> Window:
        if range_name not in RANGES:
            raise InputError(f"unknown range {range_name!r}: use one of {', '.join(RANGES)}")
        until = now or utcnow()
        span = RANGES[range_name]
        if span is None:
            c = schema.calls.c
            first = self._select(sa.select(sa.func.min(c.created_at).label("first")))[0]["first"]
            since = first if first is not None else until - timedelta(hours=1)
            span = max(until - since, timedelta(minutes=1))
        else:
            since = until - span
        return Window(since=since, until=until, bucket=bucket_for(span))

    # ---- spend ----

    def _key(self, by: str) -> sa.ColumnElement[Any]:
        c, r = schema.calls.c, schema.runs.c
        if by == "tier":
            return c.tier
        if by == "model":
            return c.model
        if by == "kind":
            return sa.func.coalesce(r.kind, "?")
        if by == "key":
            return sa.func.coalesce(r.metadata["api_key"].as_string(), NO_KEY)
        raise InputError(f"unknown grouping {by!r}: group spend by one of {', '.join(GROUPS)}")

    def _grouped(self, since: datetime | None, *extra: sa.ColumnElement[Any]) -> list[sa.RowMapping]:
        """Calls since ``since`` summed per (extra..., model, operation): enough to price them at large."""
        c, r = schema.calls.c, schema.runs.c
        groups = (*extra, c.model, c.operation)
        stmt = sa.select(
            *groups,
            sa.func.count().label("calls"),
            *(sa.func.coalesce(sa.func.sum(c[name]), 0).label(name) for name in TOKEN_COLUMNS),
            sa.func.sum(c.cost_usd).label("cost_usd"),
            sa.func.sum(sa.case((c.cost_usd.is_(None), 1), else_=0)).label("unknown"),
            sa.func.sum(sa.case((c.notional, 1), else_=0)).label("notional"),
        ).select_from(schema.calls.outerjoin(schema.runs, r.id == c.run_id))
        if since is not None:
            stmt = stmt.where(c.created_at >= since)
        return self._select(stmt.group_by(*groups))

    def at_large(self, row: sa.RowMapping | dict[str, Any]) -> float | None:
        """What the row's tokens would have cost on the large tier; embeddings count at their own cost."""
        own = None if row["cost_usd"] is None else float(row["cost_usd"])
        if row["operation"] == "embed":
            return own
        if self.large is None:
            return None
        usage = Usage(
            input_tokens=int(row["input_tokens"]),
            cached_input_tokens=int(row["cached_input_tokens"]),
            output_tokens=int(row["output_tokens"]),
        )
        return self.large.cost(usage)

    def spend_series(
        self, range_name: str = "1h", by: str = "tier", *, now: datetime | None = None
    ) -> dict[str, Any]:
        """Cost per time bucket and key, with the all-large counterfactual per bucket; empty buckets are 0."""
        key = self._key(by).label("key")
        win = self.window(range_name, now=now)
        size = win.bucket_s
        bucket = _bucket(self.dialect, schema.calls.c.created_at, size).label("bucket")
        rows = self._grouped(win.since, bucket, key)
        first = math.floor(win.since.timestamp() / size) * size
        last = math.floor(win.until.timestamp() / size) * size
        points: dict[int, dict[str, Any]] = {
            t: {"cost": {}, "calls": 0, "counterfactual": 0.0} for t in range(first, last + 1, size)
        }
        totals: dict[str, float] = defaultdict(float)
        cf_unknown = False
        for row in rows:
            t = int(row["bucket"])
            p = points.setdefault(t, {"cost": {}, "calls": 0, "counterfactual": 0.0})
            cost = float(row["cost_usd"] or 0.0)
            k = str(row["key"])
            p["cost"][k] = p["cost"].get(k, 0.0) + cost
            p["calls"] += int(row["calls"])
            totals[k] += cost
            cf = self.at_large(row)
            if cf is None:
                cf_unknown = True
            else:
                p["counterfactual"] += cf
        keys = sorted(totals, key=lambda k: (-totals[k], k))
        return {
            "by": by,
            "range": range_name,
            "bucket": win.bucket,
            "bucket_s": size,
            "since": win.since.isoformat(),
            "until": win.until.isoformat(),
            "keys": keys,
            "counterfactual_known": not cf_unknown,
            "points": [
                {
                    "t": t,
                    "cost": {k: round(v, 10) for k, v in p["cost"].items()},
                    "total": round(sum(p["cost"].values()), 10),
                    "calls": p["calls"],
                    "counterfactual": None if cf_unknown else round(p["counterfactual"], 10),
                }
                for t, p in sorted(points.items())
            ],
        }

    def totals(self, range_name: str = "1h", *, now: datetime | None = None) -> dict[str, Any]:
        """Spend, calls, the all-large counterfactual and saving, and each tier's share of calls and cost."""
        win = self.window(range_name, now=now)
        rows = self._grouped(win.since, schema.calls.c.tier)
        cost = counterfactual = 0.0
        cf_known = True
        calls = unknown = notional = 0
        tiers: dict[str, dict[str, float]] = {}
        for row in rows:
            n = int(row["calls"])
            c = float(row["cost_usd"] or 0.0)
            calls += n
            cost += c
            unknown += int(row["unknown"])
            notional += int(row["notional"])
            t = tiers.setdefault(str(row["tier"]), {"calls": 0, "cost_usd": 0.0})
            t["calls"] += n
            t["cost_usd"] += c
            cf = self.at_large(row)
            if cf is None:
                cf_known = False
            else:
                counterfactual += cf
        order = {"large": 0, "mini": 1, "nano": 2}
        return {
            "range": range_name,
            "since": win.since.isoformat(),
            "cost_usd": round(cost, 10),
            "calls": calls,
            "calls_cost_unknown": unknown,
            "notional": notional > 0,
            "notional_calls": notional,
            "counterfactual_usd": round(counterfactual, 10) if cf_known else None,
            "saving_usd": round(counterfactual - cost, 10) if cf_known else None,
            "saving_share": round(1 - cost / counterfactual, 6) if cf_known and counterfactual > 0 else None,
            "large_model": self.large.id if self.large is not None else None,
            "tiers": [
                {
                    "tier": name,
                    "calls": int(v["calls"]),
                    "share": round(v["calls"] / calls, 6) if calls else 0.0,
                    "cost_usd": round(v["cost_usd"], 10),
                }
                for name, v in sorted(tiers.items(), key=lambda kv: (order.get(kv[0], 9), kv[0]))
            ],
        }

    # ---- runs ----

    def recent_runs(self, limit: int = 25, *, now: datetime | None = None) -> list[dict[str, Any]]:
        """The newest runs with their spend and call count (a run whose process died reads interrupted)."""
        records = self.ledger.runs(limit)
        if not records:
            return []
        c = schema.calls.c
        stmt = (
            sa.select(
                c.run_id,
                sa.func.count().label("calls"),
                sa.func.sum(c.cost_usd).label("cost_usd"),
                sa.func.sum(sa.case((c.notional, 1), else_=0)).label("notional"),
            )
            .where(c.run_id.in_([r.id for r in records]))
            .group_by(c.run_id)
        )
        agg = {row["run_id"]: row for row in self._select(stmt)}
        at = now or utcnow()
        out = []
        for r in records:
            a = agg.get(r.id)
            out.append(
                {
                    **_run_json(r, at),
                    "calls": int(a["calls"]) if a else 0,
                    "cost_usd": None if a is None or a["cost_usd"] is None else float(a["cost_usd"]),
                    "notional": bool(a and a["notional"]),
                }
            )
        return out

    def run_tree(self, run_id: str, *, now: datetime | None = None) -> dict[str, Any]:
        """A run, its steps (parent, dependencies where known) with their calls, and calls outside steps."""
        run = self.ledger.get_run(run_id)
        steps = self.ledger.steps(run.id)
        calls = self.ledger.calls(run.id)
        depends = _plan_dependencies(steps)
        nodes: dict[str, dict[str, Any]] = {}
        for s in steps:  # the planning step is listed like any other; its output (the plan) is not shown
            nodes[s.step_id] = _step_json(s, depends.get(s.step_id))
        loose: list[dict[str, Any]] = []
        for call in calls:
            if call.step_id is None:
                loose.append(_call_json(call))
                continue
            # A step still running (or that died) has calls but no record yet.
            node = nodes.setdefault(call.step_id, _step_json(None, depends.get(call.step_id), call.step_id))
            node["calls"].append(_call_json(call))
        for node in nodes.values():
            costs = [c["cost_usd"] for c in node["calls"]]
            if node["cost_usd"] is None and costs and None not in costs:
                node["cost_usd"] = round(sum(costs), 10)
        total = [c.cost_usd for c in calls if c.cost_usd is not None]
        return {
            "run": {
                **_run_json(run, now or utcnow()),
                "calls": len(calls),
                "cost_usd": round(sum(total), 10) if total else None,
                "notional": any(c.notional for c in calls),
                "error": run.error,
            },
            "steps": list(nodes.values()),
            "calls": loose,
        }

    # ---- routing health ----

    def routing_health(self, range_name: str = "24h", *, now: datetime | None = None) -> dict[str, Any]:
        """Shadow-check agreement per (kind, routed tier), alarms, and circuit breakers not closed."""
        win = self.window(range_name, now=now)
        c = schema.calls.c
        routed = sa.select(
            c.task_kind,
            c.tier,
            sa.func.count().label("calls"),
            sa.func.sum(
                sa.case((sa.func.coalesce(c.metadata["escalations"].as_integer(), 0) > 0, 1), else_=0)
            ).label("escalated"),
        ).where(c.created_at >= win.since, c.operation.in_(("chat", "stream")), c.status == "ok")
        routed_rows = self._select(routed.group_by(c.task_kind, c.tier))
        checks = self._select(
            sa.select(c.task_kind, c.operation, c.cost_usd, c.metadata).where(
                c.created_at >= win.since, c.operation.in_(("shadow", "judge"))
            )
        )
        health = shadow_health(routed_rows, checks)
        circuits = [
            {**row, "changed_at": row["changed_at"].isoformat()}
            for row in self.ledger.circuits()
            if row["state"] != "closed"
        ]
        return {**health, "range": range_name, "circuits": circuits}


def shadow_health(
    routed: Iterable[sa.RowMapping | dict[str, Any]], checks: Iterable[sa.RowMapping | dict[str, Any]]
) -> dict[str, Any]:
    """Agreement per (kind, routed tier) from shadow rows; an alarm where disagreement passes 25% over at
    least 5 checks. Mirrors tierwise.evaluation.shadow, which the server may not import."""
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"routed": 0, "escalated": 0, "shadowed": 0, "agreed": 0, "agreement_sum": 0.0, "cost": 0.0}
    )
    for row in routed:
        g = groups[(str(row["task_kind"]), str(row["tier"]))]
        g["routed"] += int(row["calls"])
        g["escalated"] += int(row["escalated"] or 0)
    for row in checks:
        meta = _meta(row["metadata"])
        if row["operation"] == "shadow":
            g = groups[(str(row["task_kind"]), str(meta.get("routed_tier", "?")))]
            g["shadowed"] += 1
            g["agreed"] += bool(meta.get("agree"))
            g["agreement_sum"] += float(meta.get("agreement", 0.0) or 0.0)
            g["cost"] += float(row["cost_usd"] or 0.0)
        elif meta.get("shadow"):  # a judge's call: its cost is shadow cost
            key = (str(meta.get("routed_kind") or row["task_kind"]), str(meta.get("routed_tier", "?")))
            groups[key]["cost"] += float(row["cost_usd"] or 0.0)
    out = []
    for (kind, tier), g in sorted(groups.items()):
        if not g["shadowed"]:
            continue  # no checks: nothing to say about agreement here
        agreement = g["agreed"] / g["shadowed"]
        out.append(
            {
                "kind": kind,
                "tier": tier,
                "routed_calls": g["routed"],
                "escalation_rate": round(g["escalated"] / g["routed"], 4) if g["routed"] else None,
                "shadowed": g["shadowed"],
                "agreed": g["agreed"],
                "agreement_rate": round(agreement, 4),
                "mean_agreement": round(g["agreement_sum"] / g["shadowed"], 4),
                "shadow_cost_usd": round(g["cost"], 10),
                "alarm": g["shadowed"] >= ALARM_MIN_CHECKS and 1 - agreement > ALARM_DISAGREEMENT,
            }
        )
    shadowed = sum(r["shadowed"] for r in out)
    agreed = sum(r["agreed"] for r in out)
    return {
        "alarm_disagreement": ALARM_DISAGREEMENT,
        "alarm_min_checks": ALARM_MIN_CHECKS,
        "shadowed": shadowed,
        "agreement_rate": round(agreed / shadowed, 4) if shadowed else None,
        "alarms": [f"{r['kind']}@{r['tier']}" for r in out if r["alarm"]],
        "groups": out,
    }


def _meta(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # some drivers hand JSON back as text
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _run_json(r: RunRecord, now: datetime) -> dict[str, Any]:
    end = r.ended_at or (now if r.status == "running" else None)
    return {
        "id": r.id,
        "kind": r.kind,
        "label": r.label,
        "status": r.status,
        "key": str(r.metadata.get("api_key") or NO_KEY),
        "started_at": r.started_at.isoformat(),
        "ended_at": r.ended_at.isoformat() if r.ended_at else None,
        "duration_s": round((end - r.started_at).total_seconds(), 3) if end else None,
    }


def _step_json(s: StepRecord | None, depends_on: list[str] | None, step_id: str = "") -> dict[str, Any]:
    meta = s.metadata if s is not None else {}
    parent = meta.get("parent")
    deps = meta.get("depends_on") or meta.get("depends") or depends_on or []
    return {
        "step_id": s.step_id if s is not None else step_id,
        "status": s.status if s is not None else "running",
        "kind": str(meta.get("kind") or ""),
        "tier": s.tier if s is not None else None,
        "model": meta.get("model"),
        "cost_usd": s.cost_usd if s is not None else None,
        "error": s.error if s is not None else None,
        "parent": str(parent) if parent else None,
        "depends_on": [str(d) for d in deps] if isinstance(deps, list) else [],
        "calls": [],
    }


def _call_json(c: CallRecord) -> dict[str, Any]:
    return {
        "id": c.id,
        "step_id": c.step_id,
        "operation": c.operation,
        "kind": c.task_kind,
        "tier": c.tier,
        "model": c.model,
        "served_model": c.served_model,
        "reason": c.reason,
        "status": c.status,
        "attempt": c.attempt,
        "input_tokens": c.input_tokens,
        "cached_input_tokens": c.cached_input_tokens,
        "output_tokens": c.output_tokens,
        "cost_usd": c.cost_usd,
        "notional": c.notional,
        "latency_ms": round(c.latency_ms, 1),
        "error": c.error,
        "created_at": c.created_at.isoformat(),
    }


def _plan_dependencies(steps: list[StepRecord]) -> dict[str, list[str]]:
    """Each planned step's dependencies, from the planning step's plan (only its structure is read)."""
    plan = next((s for s in steps if s.step_id == PLAN_STEP and s.output), None)
    if plan is None or plan.output is None:
        return {}
    try:
        data = json.loads(plan.output)
    except ValueError:
        return {}
    out: dict[str, list[str]] = {}
    for step in data.get("steps", []) if isinstance(data, dict) else []:
        if isinstance(step, dict) and isinstance(step.get("id"), str):
            out[step["id"]] = [str(d) for d in step.get("depends_on") or [] if isinstance(d, str)]
    return out
