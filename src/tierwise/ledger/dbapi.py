"""SQLite inserts through the DBAPI's ``executemany``, each value bound by its column's own SQLAlchemy type.

What SQLAlchemy would store, without its per-statement and per-row work: under a batch the writer threads
insert a few rows at a time, and that work was most of their CPU per call, taken from the event loop by
the GIL (intents: 0.26 of 0.3 ms).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa


class SqliteInsert:
    """``INSERT INTO table (columns) VALUES (?, ...)`` and the rows' values in column order."""

    def __init__(self, table: sa.Table, columns: Iterable[str] | None = None) -> None:
        self.table = table
        self.columns = tuple(columns) if columns is not None else tuple(c.name for c in table.columns)
        marks = ", ".join("?" * len(self.columns))
        self.sql = f"INSERT INTO {table.name} ({', '.join(self.columns)}) VALUES ({marks})"

    def values(self, dialect: sa.Dialect, rows: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
        procs = self._processors(dialect)
        return [tuple(p(row.get(c)) if p is not None else row.get(c) for c, p in procs) for row in rows]

    @functools.cache  # per dialect object (one per engine), held, so an id can never be reused  # noqa: B019
    def _processors(self, dialect: sa.Dialect) -> tuple[tuple[str, Any], ...]:
        # dialect_impl: the dialect's own type (SQLite's DATETIME string format, say), not the generic one
        return tuple(
            (c, self.table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) for c in self.columns
        )


def executemany(raw: Any, insert: SqliteInsert, values: list[tuple[Any, ...]]) -> None:
    """One transaction on a DBAPI connection: the rows, then commit (rolled back on any error)."""
    try:
        cursor = raw.cursor()
        try:
            cursor.executemany(insert.sql, values)
        finally:
            cursor.close()
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
