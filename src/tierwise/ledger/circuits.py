"""Circuit-breaker state per model, as the runtime last reported it (rare writes: transitions only)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tierwise.ledger import schema
from tierwise.ledger.records import utcnow
from tierwise.ledger.redact import redact


def record(engine: Engine, model: str, state: str, failures: int, reason: str) -> None:
    t = schema.circuits
    row = {"model": model, "state": state, "failures": failures, "reason": redact(reason)[:500]}
    with engine.begin() as conn:
        done = conn.execute(t.update().where(t.c.model == model).values(**row, changed_at=utcnow()))
        if done.rowcount == 0:
            conn.execute(t.insert().values(**row, changed_at=utcnow()))


def read(engine: Engine) -> list[dict[str, Any]]:
    t = schema.circuits
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.model)).mappings()]
