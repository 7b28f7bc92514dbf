"""The ledger's tables (SQLAlchemy Core) and the engine that serves them, on SQLite or PostgreSQL."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.pool import StaticPool

from tierwise.errors import LedgerError

SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware datetimes in and out, stored as UTC.

    SQLite has no timezone type, so values are stored as naive UTC there and tagged UTC on the way out;
    PostgreSQL gets ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # Naive datetimes are taken as UTC: records are created with utcnow(), never local time.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL so metadata can be queried and indexed later; plain JSON (text) elsewhere.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.String(64)

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("label", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("budget_usd", sa.Double, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Index("ix_runs_started_at", "started_at"),
)

calls = sa.Table(
    "calls",
    metadata,
    # seq gives a stable insertion order (created_at can tie) and a cheap rowid primary key on SQLite.
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("id", ID, nullable=False, unique=True),
    sa.Column("run_id", ID, nullable=False),
    sa.Column("step_id", sa.String(255), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("task_kind", sa.String(64), nullable=False),
    sa.Column("tier", sa.String(32), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("served_model", sa.String(255), nullable=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Double, nullable=True),
    sa.Column("notional", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("prompt", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Index("ix_calls_run_id", "run_id"),
    sa.Index("ix_calls_created_at", "created_at"),
)

steps = sa.Table(
    "steps",
    metadata,
    # Append-only: a step may be recorded more than once (retried, resumed); the highest seq wins.
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("run_id", ID, nullable=False),
    sa.Column("step_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("tier", sa.String(32), nullable=True),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("cost_usd", sa.Double, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Index("ix_steps_run_id", "run_id"),
)

# Who holds a run right now (host and pid): a second process resuming the same run is refused, and a
# run whose holder died (kill -9) reads as interrupted instead of "running" forever.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("run_id", ID, primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
)

# Calls sent but not yet recorded (write-ahead): the row is written before the request leaves and
# deleted in the transaction that records the call. Rows left behind by a crash become "interrupted"
# calls, at their reserved cost, when the run resumes.
intents = sa.Table(
    "intents",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("run_id", ID, nullable=False),
    sa.Column("step_id", sa.String(255), nullable=True),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("task_kind", sa.String(64), nullable=False),
    sa.Column("tier", sa.String(32), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("reserved_usd", sa.Double, nullable=True),
    sa.Column("notional", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_intents_run_id", "run_id"),
)

# Each model's circuit breaker as last reported: the dashboard and `tierwise runs` read it here.
circuits = sa.Table(
    "circuits",
    metadata,
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("changed_at", UTCDateTime, nullable=False),
)

# The proxy's API keys (``tierwise keys``): the secret's sha256 and a short display prefix, never the secret.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("budget_usd", sa.Double, nullable=True),
    sa.Column("period", sa.String(8), nullable=False),
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

# Which key a proxy run serves: spend per key is calls joined on this (indexed, the same on both backends).
run_keys = sa.Table(
    "run_keys",
    metadata,
    sa.Column("run_id", ID, primary_key=True),
    sa.Column("key_id", ID, nullable=False),
    sa.Column("period_start", UTCDateTime, nullable=False),
    sa.Index("ix_run_keys_key_period", "key_id", "period_start"),
)

# A key's budget for one period as handed out to the processes serving it; granted never passes the cap.
key_allowances = sa.Table(
    "key_allowances",
    metadata,
    sa.Column("key_id", ID, primary_key=True),
    sa.Column("period_start", UTCDateTime, primary_key=True),
    sa.Column("granted_usd", sa.Double, nullable=False),
)

# What each live proxy run holds of its key's allowance: a dead holder's unused share can be taken back.
key_grants = sa.Table(
    "key_grants",
    metadata,
    sa.Column("run_id", ID, primary_key=True),
    sa.Column("key_id", ID, nullable=False),
    sa.Column("period_start", UTCDateTime, nullable=False),
    sa.Column("granted_usd", sa.Double, nullable=False),
    sa.Index("ix_key_grants_key_period", "key_id", "period_start"),
)

# Requests per key per minute window, counted in the database when several workers share a key's rpm.
key_rates = sa.Table(
    "key_rates",
    metadata,
    sa.Column("key_id", ID, primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)


def normalize_url(url: str) -> URL:
    """Parse a user's ledger URL: a bare path means SQLite; ``postgresql://`` means psycopg 3."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise LedgerError(
            f"ledger URL {url!r} is not a database URL; use sqlite:///path/to/ledger.db "
            "or postgresql://user@host:5432/dbname"
        ) from exc
    # psycopg2 is not a dependency; the bare scheme (and Heroku's postgres://) means psycopg 3.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def display_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database)


def _json_dumps(value: Any) -> str:
    # Metadata is caller-supplied; a datetime or Path in it must not cost the whole batch.
    return json.dumps(value, default=str, ensure_ascii=False)


def create_engine(url: URL, *, synchronous: str = "FULL") -> Engine:
    """One Engine per Ledger, shared by the writer thread and readers.

    ``synchronous`` (SQLite only): FULL makes a commit survive power loss; NORMAL (WAL) survives a killed
    process at a fraction of the cost, which is what write-ahead intents need on every call.
    """
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        if path is None:
            # An in-memory database exists per connection: every thread must share the one connection.
            engine = sa.create_engine(
                url, connect_args=connect_args, poolclass=StaticPool, json_serializer=_json_dumps
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args=connect_args, json_serializer=_json_dumps)
        sa.event.listen(engine, "connect", functools.partial(_sqlite_pragmas, synchronous=synchronous))
        return engine
    connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S} if url.get_backend_name() == "postgresql" else {}
    return sa.create_engine(
        url, connect_args=connect_args, pool_pre_ping=True, pool_size=4, json_serializer=_json_dumps
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, *, synchronous: str = "FULL") -> None:
    cursor = dbapi_conn.cursor()
    try:
        # WAL lets readers (CLI, dashboard) read while the writer writes; synchronous=FULL makes a
        # committed batch survive power loss, not only a killed process. Commits are batched, so the
        # extra fsync per commit is cheap.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()


def create_tables(engine: Engine) -> None:
    """Create missing tables; tolerate another process creating them at the same moment."""
    try:
        metadata.create_all(engine, checkfirst=True)
    except (sa.exc.ProgrammingError, sa.exc.IntegrityError, sa.exc.OperationalError):
        existing = set(sa.inspect(engine).get_table_names())
        if not {"runs", "calls", "steps"} <= existing:
            raise


def open_error(url: URL, exc: BaseException, *, writing: bool = False) -> LedgerError:
    """Why the ledger could not be opened, with the URL (password masked) and the fix."""
    shown = display_url(url)
    # The driver's own first line says what happened ("Connection refused"); the rest is noise.
    text = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [repr(exc)])[0]
    if url.password:
        text = text.replace(str(url.password), "***")
    backend = url.get_backend_name()
    lowered = text.lower()
    if isinstance(exc, ImportError):
        fix = "PostgreSQL needs psycopg 3: pip install 'tierwise[postgres]'"
    elif backend == "postgresql":
        host, port = url.host or "localhost", url.port or 5432
        if "authentication" in lowered or "role" in lowered:
            fix = "check the user name and password in the ledger URL"
        elif "database" in lowered and "does not exist" in lowered:
            fix = f"create the database: createdb -h {host} -p {port} {url.database}"
        else:
            fix = f"is the server running? check with pg_isready -h {host} -p {port}"
    elif backend == "sqlite":
        path = sqlite_path(url)
        if path is not None and path.is_dir():
            fix = f"{path} is a folder; point the ledger URL at a file, e.g. sqlite:///{path}/ledger.db"
        elif "not a database" in lowered:
            fix = f"{path} is not a SQLite database; move it away or point the ledger URL elsewhere"
        else:
            where = path.parent.resolve() if path else "the folder"
            fix = f"check that {where} is a writable folder, or point the ledger URL elsewhere"
    else:
        fix = "check the ledger URL (sqlite:///path/to/ledger.db or postgresql://user@host/db)"
    what = "cannot write to the ledger" if writing else "cannot open the ledger"
    if writing and "readonly" in lowered.replace("-", "").replace(" ", ""):
        fix = "make the ledger file and its folder writable, or point the ledger URL elsewhere"
    return LedgerError(f"{what} at {shown}: {text}. Fix: {fix}")
