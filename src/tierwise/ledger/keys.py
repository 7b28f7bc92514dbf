"""The proxy's API keys in the ledger: create, look up by hash, list, revoke, and spend per key.

A key is ``tw-`` + ``secrets.token_urlsafe(32)``; only its sha256 (a fast hash is right for 256 random bits)
and a short display prefix are stored. Spend is attributed through ``run_keys`` (run id → key id, indexed),
written when the proxy opens a key's run: ``key_spend`` and ``spend_by_key`` join calls on it, which reads
the same on SQLite and PostgreSQL (no JSON querying of ``runs.metadata``).

These functions take an Engine and are synchronous: the CLI calls them directly, the server off the loop.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from tierwise.errors import InputError, LedgerError
from tierwise.ledger import schema
from tierwise.ledger.records import new_id, utcnow

SECRET_PREFIX = "tw-"
PERIODS = ("day", "month")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SHOWN = 6  # characters of the secret kept for display: enough to tell keys apart, useless to guess


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A stored key: everything but the secret (which is never stored)."""

    id: str
    name: str
    prefix: str
    secret_sha256: str
    budget_usd: float | None
    period: str
    rpm: int | None
    admin: bool
    status: str  # active | revoked
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_name(name: object) -> str:
    """A key name: 1-64 characters of A-Z a-z 0-9 . _ - (it appears in headers, logs and tables)."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        shown = repr(name)[:80]
        raise InputError(
            f"key name {shown} is not allowed: use 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return name


def check_limits(budget_usd: float | None, period: str, rpm: int | None) -> None:
    # `not x > 0` rather than `x <= 0`: NaN compares false both ways and would disable the cap.
    if budget_usd is not None and not (budget_usd > 0 and budget_usd < float("inf")):
        raise InputError(f"--budget must be a finite amount above 0 in USD, got {budget_usd}")
    if period not in PERIODS:
        raise InputError(f"--period must be day or month, got {period!r}")
    if rpm is not None and not rpm > 0:
        raise InputError(f"--rpm must be at least 1 request per minute, got {rpm}")


def _row(r: Any) -> KeyRow:
    return KeyRow(**{k: r[k] for k in KeyRow.__slots__})


def create_key(
    engine: Engine,
    name: str,
    *,
    budget_usd: float | None = None,
    period: str = "month",
    rpm: int | None = None,
    admin: bool = False,
) -> tuple[KeyRow, str]:
    """Store a new key; returns its row and the secret, which exists nowhere else from then on."""
    check_name(name)
    check_limits(budget_usd, period, rpm)
    secret = new_secret()
    row = KeyRow(
        id=new_id(),
        name=name,
        prefix=secret[: len(SECRET_PREFIX) + _SHOWN],
        secret_sha256=secret_hash(secret),
        budget_usd=budget_usd,
        period=period,
        rpm=rpm,
        admin=admin,
        status="active",
        created_at=utcnow(),
    )
    try:
        with engine.begin() as conn:
            conn.execute(schema.api_keys.insert().values(**{k: getattr(row, k) for k in KeyRow.__slots__}))
    except sa.exc.IntegrityError:
        raise InputError(
            f"a key named {name!r} exists already (revoked names stay taken): pick another name"
        ) from None
    return row, secret


def by_hash(engine: Engine, digest: str) -> KeyRow | None:
    t = schema.api_keys
    with engine.connect() as conn:
        r = conn.execute(sa.select(t).where(t.c.secret_sha256 == digest)).mappings().first()
    return None if r is None else _row(r)


def list_keys(engine: Engine) -> list[KeyRow]:
    t = schema.api_keys
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(sa.select(t).order_by(t.c.created_at, t.c.name)).mappings()]


def find_key(engine: Engine, name_or_id: str) -> KeyRow:
    """The key with this name or id (or id prefix, when only one key's id starts with it)."""
    t = schema.api_keys
    with engine.connect() as conn:
        rows = list(
            conn.execute(sa.select(t).where((t.c.name == name_or_id) | (t.c.id == name_or_id))).mappings()
        )
        if not rows and len(name_or_id) >= 6:
            prefix = t.c.id.startswith(name_or_id, autoescape=True)
            rows = list(conn.execute(sa.select(t).where(prefix).limit(2)).mappings())
    if len(rows) != 1:
        what = "no key" if not rows else "more than one key"
        raise InputError(f"{what} named {name_or_id[:80]!r} or with that id: see `tierwise keys list`")
    return _row(rows[0])


def revoke(engine: Engine, name_or_id: str) -> tuple[KeyRow, bool]:
    """Revoke a key; returns it and whether it was active until now."""
    row = find_key(engine, name_or_id)
    t = schema.api_keys
    with engine.begin() as conn:
        done = conn.execute(
            t.update()
            .where(t.c.id == row.id, t.c.status == "active")
            .values(status="revoked", revoked_at=utcnow())
        )
    return row, done.rowcount == 1


def link_run(engine: Engine, run_id: str, key_id: str, period_start: datetime) -> None:
    """Attribute a proxy run (and so its calls) to a key."""
    with engine.begin() as conn:
        conn.execute(schema.run_keys.insert().values(run_id=run_id, key_id=key_id, period_start=period_start))


def key_spend(engine: Engine, key_id: str, since: datetime | None = None) -> float:
    """What the key's calls cost (USD), since ``since`` when given."""
    c, rk = schema.calls, schema.run_keys
    stmt = sa.select(sa.func.coalesce(sa.func.sum(c.c.cost_usd), 0.0)).join(rk, rk.c.run_id == c.c.run_id)
    stmt = stmt.where(rk.c.key_id == key_id)
    if since is not None:
        stmt = stmt.where(c.c.created_at >= since)
    with engine.connect() as conn:
        return float(conn.execute(stmt).scalar_one())


def spend_by_key(engine: Engine, since: datetime | None = None) -> list[dict[str, Any]]:
    """Calls and cost per key (id, name), most expensive first: the dashboard's "by key" view."""
    c, rk, k = schema.calls, schema.run_keys, schema.api_keys
    cost = sa.func.coalesce(sa.func.sum(c.c.cost_usd), 0.0).label("cost_usd")
    stmt = (
        sa.select(k.c.id.label("key_id"), k.c.name, sa.func.count(c.c.seq).label("calls"), cost)
        .select_from(c.join(rk, rk.c.run_id == c.c.run_id).join(k, k.c.id == rk.c.key_id))
        .group_by(k.c.id, k.c.name)
        .order_by(cost.desc())
    )
    if since is not None:
        stmt = stmt.where(c.c.created_at >= since)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def period_spend(conn: Connection, key_id: str, period_start: datetime) -> float:
    """Money the key's runs of one period spent or have in flight: recorded calls plus write-ahead intents
    at their reserved cost (a call sent and not yet recorded is counted, never missed)."""
    c, i, rk = schema.calls, schema.intents, schema.run_keys
    runs = sa.select(rk.c.run_id).where(rk.c.key_id == key_id, rk.c.period_start == period_start)
    done = sa.select(sa.func.coalesce(sa.func.sum(c.c.cost_usd), 0.0)).where(c.c.run_id.in_(runs))
    flying = sa.select(sa.func.coalesce(sa.func.sum(i.c.reserved_usd), 0.0)).where(i.c.run_id.in_(runs))
    return float(conn.execute(done).scalar_one()) + float(conn.execute(flying).scalar_one())


def run_spend(conn: Connection, run_id: str) -> float:
    """One run's recorded calls plus its unrecorded intents at their reserved cost."""
    c, i = schema.calls, schema.intents
    done = sa.select(sa.func.coalesce(sa.func.sum(c.c.cost_usd), 0.0)).where(c.c.run_id == run_id)
    flying = sa.select(sa.func.coalesce(sa.func.sum(i.c.reserved_usd), 0.0)).where(i.c.run_id == run_id)
    return float(conn.execute(done).scalar_one()) + float(conn.execute(flying).scalar_one())


def open_engine(url: str | URL) -> Engine:
    """An engine on the ledger at ``url`` for key reads and writes (its tables created if missing).

    A key store must outlive the process and be shared by the CLI and the server's workers, so an
    in-memory SQLite ledger is refused.
    """
    parsed = url if isinstance(url, URL) else schema.normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and schema.sqlite_path(parsed) is None:
        raise LedgerError(
            "API keys need a ledger that outlives the process: set [ledger] url to a file or PostgreSQL"
        )
    try:
        engine = schema.create_engine(parsed, synchronous="NORMAL")
        schema.create_tables(engine)
    except (sa.exc.SQLAlchemyError, OSError, ImportError) as exc:
        raise schema.open_error(parsed, exc) from exc
    return engine
