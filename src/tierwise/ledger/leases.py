"""Who holds a run, and which calls were sent but not yet recorded.

A *lease* names the process (host, pid) running a run: a second process that tries to run or resume
the same run is refused with the holder's pid, and a run whose holder died (``kill -9``) reads as
``interrupted``. An *intent* is written before a request leaves and deleted in the transaction that
records its call, so a crash in between leaves a row that resume turns into an ``interrupted`` call
at its reserved cost: no paid call goes unrecorded.

These writes are synchronous (not queued like call records): their whole point is to be in the
database before the next thing happens.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tierwise.errors import LedgerError
from tierwise.ledger import schema
from tierwise.ledger.dbapi import SqliteInsert, executemany
from tierwise.ledger.records import CallRecord, utcnow
from tierwise.ledger.redact import redact

HOST = socket.gethostname()


class RunLocked(LedgerError):
    """Another live process holds the run."""


@dataclass(frozen=True, slots=True)
class Holder:
    host: str
    pid: int
    acquired_at: datetime

    @property
    def alive(self) -> bool | None:
        """Whether the holding process still runs; None when it is on another host (cannot tell)."""
        return pid_alive(self.pid) if self.host == HOST else None

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return True


def _holder(conn: sa.Connection, run_id: str) -> Holder | None:
    t = schema.leases
    row = conn.execute(sa.select(t).where(t.c.run_id == run_id)).mappings().first()
    return None if row is None else Holder(row["host"], row["pid"], row["acquired_at"])


def acquire(engine: Engine, run_id: str) -> None:
    """Take the run for this process, or raise RunLocked naming the live holder. A dead holder's lease
    is taken over (compare-and-set on its pid, so two processes cannot both take it)."""
    t = schema.leases
    me = {"run_id": run_id, "host": HOST, "pid": os.getpid(), "acquired_at": utcnow()}
    for _ in range(3):
        try:
            with engine.begin() as conn:
                held = _holder(conn, run_id)
                if held is None:
                    conn.execute(t.insert().values(**me))
                    return
                if (held.host, held.pid) == (HOST, os.getpid()):
                    return
                if held.alive is False:
                    taken = conn.execute(
                        t.update()
                        .where(t.c.run_id == run_id, t.c.host == held.host, t.c.pid == held.pid)
                        .values(**me)
                    )
                    if taken.rowcount == 1:
                        return
                    continue
        except sa.exc.IntegrityError:
            continue  # another process inserted first: read who it is
        raise RunLocked(
            f"run {run_id} is held by {held} since {held.acquired_at:%Y-%m-%d %H:%M:%S} UTC: "
            "wait for that process to finish or stop it, then resume"
        )
    raise RunLocked(f"run {run_id} is being taken by another process right now: try again")


def release(engine: Engine, run_id: str) -> None:
    t = schema.leases
    with engine.begin() as conn:
        conn.execute(t.delete().where(t.c.run_id == run_id, t.c.host == HOST, t.c.pid == os.getpid()))


def holders(engine: Engine, run_ids: list[str]) -> dict[str, Holder]:
    if not run_ids:
        return {}
    t = schema.leases
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.run_id.in_(run_ids))).mappings()
        return {r["run_id"]: Holder(r["host"], r["pid"], r["acquired_at"]) for r in rows}


def probe_writable(engine: Engine) -> None:
    """Fail now, before any request is sent, if the ledger cannot be written (a read-only file, a
    read-only database user): a paid call must always have somewhere to be recorded."""
    conn = engine.connect()
    try:
        trans = conn.begin()
        conn.execute(
            schema.leases.insert().values(
                run_id="__probe__", host=HOST, pid=os.getpid(), acquired_at=utcnow()
            )
        )
        trans.rollback()
    finally:
        conn.close()


def write_intents(engine: Engine, rows: list[dict[str, Any]], *, outage_s: float = 8.0) -> None:
    """Insert intents in one transaction; a database that is briefly away (a restart) is waited for, up
    to ``outage_s``, since nothing may be sent until its intent is written."""
    clean = _clean(rows)
    sqlite = engine.dialect.name == "sqlite"
    delay, waited = 0.1, 0.0
    while True:
        try:
            if sqlite:
                _insert_sqlite(engine, clean)
            else:
                with engine.begin() as conn:
                    conn.execute(schema.intents.insert(), clean)
            return
        except (sa.exc.OperationalError, sqlite3.OperationalError):
            if waited >= outage_s:
                raise
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 2.0)


def try_write_intents(engine: Engine, raw: Any, rows: list[dict[str, Any]]) -> bool:
    """Insert intents in one SQLite transaction on ``raw`` (a DBAPI connection of ``engine`` that does
    not wait on locks: ``busy_timeout`` 0), or return False at once if another process holds the write
    lock; the caller then queues them for a writer that waits. Never blocks the caller."""
    try:
        executemany(raw, _INTENTS, _INTENTS.values(engine.dialect, _clean(rows)))
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return False
        raise
    return True


def _clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now = utcnow()
    return [{**row, "reason": redact(str(row.get("reason", ""))), "created_at": now} for row in rows]


_INTENTS = SqliteInsert(schema.intents)


def _insert_sqlite(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """The intents' INSERT through the DBAPI (``ledger/dbapi.py``), on a pooled connection."""
    values = _INTENTS.values(engine.dialect, rows)
    raw = engine.raw_connection()
    try:
        executemany(raw, _INTENTS, values)
    finally:
        raw.close()  # back to the pool


def clear_intents(conn: sa.Connection, ids: list[str]) -> None:
    if ids:
        conn.execute(schema.intents.delete().where(schema.intents.c.id.in_(ids)))


def settle_intents(
    engine: Engine, run_id: str, to_row: Callable[[CallRecord], dict[str, Any]]
) -> list[CallRecord]:
    """Turn the run's leftover intents into ``interrupted`` calls at their reserved cost (one transaction);
    ``to_row`` is the ledger's own call-row builder (redaction included)."""
    t = schema.intents
    with engine.begin() as conn:
        rows = list(conn.execute(sa.select(t).where(t.c.run_id == run_id)).mappings())
        records = [
            CallRecord(
                run_id=run_id,
                task_kind=r["task_kind"],
                tier=r["tier"],
                model=r["model"],
                provider=r["provider"],
                reason=r["reason"],
                status="interrupted",
                step_id=r["step_id"],
                operation=r["operation"],
                cost_usd=r["reserved_usd"],
                notional=r["notional"],
                error="in flight when the run stopped; its cost is the reserved worst case",
                created_at=r["created_at"],
                metadata={"intent_id": r["id"], "cost_estimated": True},
            )
            for r in rows
        ]
        if records:
            conn.execute(schema.calls.insert(), [to_row(rec) for rec in records])
            clear_intents(conn, [r["id"] for r in rows])
        return records
