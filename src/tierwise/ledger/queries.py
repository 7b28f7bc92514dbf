"""The ledger's read-side SQL: spend grouped by a key, one run's summary, rows back into records."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Literal, TypeVar

import sqlalchemy as sa

from tierwise.errors import InputError
from tierwise.ledger import schema
from tierwise.ledger.records import CallRecord, RunRecord, StepRecord

SpendKey = Literal["tier", "model", "run", "kind"]
SPEND_COLUMNS: dict[str, str] = {"tier": "tier", "model": "model", "run": "run_id", "kind": "task_kind"}
TOKEN_COLUMNS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")

R = TypeVar("R", RunRecord, CallRecord, StepRecord)
_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in (RunRecord, CallRecord, StepRecord)
}


def to_record(cls: type[R], row: sa.RowMapping) -> R:
    values = {name: row[name] for name in _FIELDS[cls]}
    if values.get("metadata") is None:
        values["metadata"] = {}
    return cls(**values)


def _add(total: float | None, value: float | None) -> float | None:
    """Sum costs where None means unknown: the total is None only if every part is."""
    if value is None:
        return total
    return value if total is None else total + value


def _aggregates() -> list[sa.ColumnElement[Any]]:
    c = schema.calls.c
    return [
        sa.func.count().label("calls"),
        *(sa.func.coalesce(sa.func.sum(c[name]), 0).label(name) for name in TOKEN_COLUMNS),
        # SUM over only NULLs is NULL: "cost unknown" survives aggregation as None.
        sa.func.sum(c.cost_usd).label("cost_usd"),
        # MAX over a boolean is not portable (PostgreSQL has none); count the notional rows instead.
        sa.func.sum(sa.case((c.notional, 1), else_=0)).label("notional"),
    ]


def spend_select(by: str, run_id: str | None, since: datetime | None) -> sa.Select[Any]:
    if by not in SPEND_COLUMNS:
        raise InputError(f"spend(by={by!r}): choose one of {', '.join(SPEND_COLUMNS)}")
    c = schema.calls.c
    key = c[SPEND_COLUMNS[by]]
    stmt = sa.select(key.label("key"), *_aggregates()).group_by(key)
    if run_id is not None:
        stmt = stmt.where(c.run_id == run_id)
    if since is not None:
        stmt = stmt.where(c.created_at >= since)
    return stmt.order_by(sa.func.coalesce(sa.func.sum(c.cost_usd), 0).desc(), key)


def spend_rows(rows: list[sa.RowMapping]) -> list[dict[str, Any]]:
    return [
        {
            "key": row["key"],
            "calls": int(row["calls"]),
            **{name: int(row[name]) for name in TOKEN_COLUMNS},
            "cost_usd": None if row["cost_usd"] is None else float(row["cost_usd"]),
            "notional": bool(row["notional"]),
        }
        for row in rows
    ]


def summary_select(run_id: str) -> sa.Select[Any]:
    c = schema.calls.c
    groups = (c.tier, c.step_id, c.status)
    return sa.select(*groups, *_aggregates()).where(c.run_id == run_id).group_by(*groups)


def summarize(run: RunRecord, rows: list[sa.RowMapping], steps: list[StepRecord]) -> dict[str, Any]:
    """Fold per (tier, step, status) aggregates into one JSON-ready dict."""
    total: float | None = None
    by_tier: dict[str, float | None] = {}
    by_step: dict[str, float | None] = {}
    unattributed: float | None = None  # planning, synthesis, QA: calls outside any step
    tokens = dict.fromkeys(TOKEN_COLUMNS, 0)
    statuses: dict[str, int] = {}
    notional = False
    for row in rows:
        cost = None if row["cost_usd"] is None else float(row["cost_usd"])
        total = _add(total, cost)
        by_tier[row["tier"]] = _add(by_tier.get(row["tier"]), cost)
        if row["step_id"] is None:
            unattributed = _add(unattributed, cost)
        else:
            by_step[row["step_id"]] = _add(by_step.get(row["step_id"]), cost)
        for name in TOKEN_COLUMNS:
            tokens[name] += int(row[name])
        statuses[row["status"]] = statuses.get(row["status"], 0) + int(row["calls"])
        notional = notional or bool(row["notional"])
    step_statuses: dict[str, int] = {}
    for step in steps:
        step_statuses[step.status] = step_statuses.get(step.status, 0) + 1
    return {
        "run_id": run.id,
        "kind": run.kind,
        "label": run.label,
        "status": run.status,
        "error": run.error,
        "started_at": run.started_at.isoformat(),
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "calls": sum(statuses.values()),
        "cost_usd": total,
        "notional": notional,
        "cost_by_tier": by_tier,
        "cost_by_step": by_step,
        "unattributed_cost_usd": unattributed,
        "tokens": tokens,
        "statuses": statuses,
        "step_statuses": step_statuses,
    }
