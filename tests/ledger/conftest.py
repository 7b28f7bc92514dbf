"""Ledger fixtures: a SQLite file per test, and a fresh PostgreSQL schema per test when a server is up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import pytest

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_base_url() -> str:
    url = os.environ.get("TIERWISE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    # libpq (used directly below) knows postgresql:// but not SQLAlchemy's driver suffix.
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a schema of its own, dropped afterwards: runs never collide."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg 3 is not installed")
    base = _postgres_base_url()
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {base}: {str(exc).strip().splitlines()[0]}")
    name = f"tierwise_test_{uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
        try:
            sep = "&" if "?" in base else "?"
            yield f"{base}{sep}options={quote(f'-csearch_path={name}')}"
        finally:
            admin.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_url(request: pytest.FixtureRequest) -> str:
    """Run a test on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))
