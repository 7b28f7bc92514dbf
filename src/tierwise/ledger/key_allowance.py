"""A key's budget shared by several processes, and its requests-per-minute counted across them.

Each process serving a key holds a *grant* (``key_grants``, one row per proxy run): the run's in-memory
budget cap is what it holds, so its ``Budget.reserve`` refuses with no database round trip. Grants come out
of one row per key and period (``key_allowances.granted_usd``) by a compare-and-set UPDATE that only
succeeds while ``granted + amount <= cap``; so the holders together can never hold more than the key's
budget, on SQLite (WAL, several processes) and PostgreSQL alike. A run that ends gives back what it did not
spend; a run whose process died (its run lease is gone or its pid is dead) is reclaimed by the next process
short of allowance, at what the ledger says it spent (calls plus in-flight intents at their reserved cost).

The allowance row starts, for a period, at what the key's runs of that period already spent: spend of
earlier processes counts.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tierwise.ledger import leases, schema
from tierwise.ledger.keys import period_spend, run_spend

_EPS = 1e-12
_CAS_TRIES = 8


def _granted(conn: Connection, key_id: str, period_start: datetime) -> float | None:
    t = schema.key_allowances
    value = conn.execute(
        sa.select(t.c.granted_usd).where(t.c.key_id == key_id, t.c.period_start == period_start)
    ).scalar_one_or_none()
    return None if value is None else float(value)


def _ensure_row(engine: Engine, key_id: str, period_start: datetime) -> float:
    with engine.begin() as conn:
        granted = _granted(conn, key_id, period_start)
        if granted is not None:
            return granted
    try:
        with engine.begin() as conn:
            spent = period_spend(conn, key_id, period_start)
            conn.execute(
                schema.key_allowances.insert().values(
                    key_id=key_id, period_start=period_start, granted_usd=spent
                )
            )
            return spent
    except sa.exc.IntegrityError:  # another process created it first: read theirs
        with engine.connect() as conn:
            return _granted(conn, key_id, period_start) or 0.0


def take(
    engine: Engine,
    *,
    key_id: str,
    period_start: datetime,
    run_id: str,
    cap_usd: float,
    want_usd: float,
    need_usd: float = 0.0,
) -> float:
    """Grant ``run_id`` up to ``want_usd`` of the key's allowance (at least ``need_usd``, else nothing);
    returns the amount granted. Dead holders are reclaimed when what is left falls short."""
    for reclaimed in (False, True):
        got = _take(engine, key_id, period_start, run_id, cap_usd, want_usd, need_usd)
        if got > 0 or reclaimed or reclaim(engine, key_id, period_start, exclude=run_id) <= 0:
            return got
    return 0.0


def _take(
    engine: Engine,
    key_id: str,
    period_start: datetime,
    run_id: str,
    cap_usd: float,
    want_usd: float,
    need_usd: float,
) -> float:
    t, g = schema.key_allowances, schema.key_grants
    granted = _ensure_row(engine, key_id, period_start)
    for _ in range(_CAS_TRIES):
        amount = min(want_usd, cap_usd - granted)
        if amount <= _EPS or amount + _EPS < need_usd:
            return 0.0
        with engine.begin() as conn:
            done = conn.execute(
                t.update()
                .where(
                    t.c.key_id == key_id,
                    t.c.period_start == period_start,
                    # Checked by the database on the row as it is now: concurrent takers cannot pass the cap.
                    t.c.granted_usd + amount <= cap_usd + _EPS,
                )
                .values(granted_usd=t.c.granted_usd + amount)
            )
            if done.rowcount == 1:
                more = conn.execute(
                    g.update().where(g.c.run_id == run_id).values(granted_usd=g.c.granted_usd + amount)
                )
                if more.rowcount == 0:
                    conn.execute(
                        g.insert().values(
                            run_id=run_id, key_id=key_id, period_start=period_start, granted_usd=amount
                        )
                    )
                return amount
            granted = _granted(conn, key_id, period_start) or 0.0
    return 0.0


def give_back(engine: Engine, run_id: str, spent_usd: float) -> float:
    """End ``run_id``'s grant: what it did not spend goes back to the key. Returns the amount returned
    (0 when the grant was already ended or reclaimed)."""
    g = schema.key_grants
    with engine.begin() as conn:
        row = conn.execute(sa.select(g).where(g.c.run_id == run_id)).mappings().first()
        if row is None:
            return 0.0
        return _end_grant(conn, row, spent_usd)


def _end_grant(conn: Connection, row: sa.RowMapping, spent_usd: float) -> float:
    """Delete the grant (only if it still holds what was read) and credit its unused part to the key."""
    g, t = schema.key_grants, schema.key_allowances
    gone = conn.execute(g.delete().where(g.c.run_id == row["run_id"], g.c.granted_usd == row["granted_usd"]))
    if gone.rowcount != 1:
        return 0.0  # someone else ended it (or it grew): they account for it
    unused = max(0.0, float(row["granted_usd"]) - spent_usd)
    if unused > 0:
        conn.execute(
            t.update()
            .where(t.c.key_id == row["key_id"], t.c.period_start == row["period_start"])
            .values(granted_usd=t.c.granted_usd - unused)
        )
    return unused


def reclaim(engine: Engine, key_id: str, period_start: datetime, *, exclude: str) -> float:
    """Take back the unused grants of runs whose process is gone; returns the amount reclaimed."""
    g = schema.key_grants
    with engine.connect() as conn:
        rows = list(
            conn.execute(
                sa.select(g).where(
                    g.c.key_id == key_id, g.c.period_start == period_start, g.c.run_id != exclude
                )
            ).mappings()
        )
    if not rows:
        return 0.0
    held = leases.holders(engine, [r["run_id"] for r in rows])
    total = 0.0
    for row in rows:
        holder = held.get(row["run_id"])
        if holder is not None and holder.alive is not False:
            continue  # alive, or on another host where we cannot tell: never take from the living
        with engine.begin() as conn:
            total += _end_grant(conn, row, run_spend(conn, row["run_id"]))
    return total


def count_request(engine: Engine, key_id: str, window: int, rpm: int) -> bool:
    """Count one request of the key in minute ``window``; False when the window already has ``rpm``."""
    t = schema.key_rates
    with engine.begin() as conn:
        done = conn.execute(
            t.update()
            .where(t.c.key_id == key_id, t.c.window == window, t.c.count < rpm)
            .values(count=t.c.count + 1)
        )
        if done.rowcount == 1:
            return True
        exists = conn.execute(
            sa.select(t.c.count).where(t.c.key_id == key_id, t.c.window == window)
        ).scalar_one_or_none()
        if exists is not None:
            return False
    try:
        with engine.begin() as conn:
            # Old windows of this key are no use to anyone: dropped as a new one starts.
            conn.execute(t.delete().where(t.c.key_id == key_id, t.c.window < window - 1))
            conn.execute(t.insert().values(key_id=key_id, window=window, count=1))
        return True
    except sa.exc.IntegrityError:  # another worker opened the window first: count against it
        return count_request(engine, key_id, window, rpm)
