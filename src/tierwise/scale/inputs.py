"""Streaming readers for batch input: JSONL, CSV or Parquet, one item at a time, never the whole file.

Each item keeps its line (JSONL, CSV) or row number (Parquet), so a bad row is reported where it is, and
an id: the row's ``id`` field when it has one, else that number, so re-running the same file gives the
same ids and resume can match them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tierwise.errors import InputError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PARQUET_BATCH = 4096  # rows read at once from a Parquet file: bounded memory whatever the file's size


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    text: str
    line: int  # 1-based line (JSONL, CSV) or row (Parquet) in the input
    data: dict[str, Any] = field(default_factory=dict)  # the whole row, for --prompt templates


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    why: str


def input_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"input {str(path)!r} has an unknown extension {path.suffix or '(none)'!r}: "
            "use .jsonl, .csv or .parquet"
        )
    return fmt


def check_input(path: Path) -> str:
    """The input's format, after checking it exists, is readable and is not empty (one line each)."""
    fmt = input_format(path)
    if not path.is_file():
        raise InputError(f"input {str(path)!r} not found: check the path")
    try:
        with path.open("rb") as f:
            head = f.read(1)
    except OSError as exc:
        raise InputError(
            f"input {str(path)!r} cannot be read ({exc.strerror}): check its permissions"
        ) from None
    if not head:
        raise InputError(f"input {str(path)!r} is empty: pass a file with one item per row")
    return fmt


def read_items(path: Path, field_name: str = "text", id_field: str = "id") -> Iterator[Item | BadRow]:
    """Items of ``path`` in input order; rows that cannot be used come as ``BadRow`` (the caller decides)."""
    fmt = check_input(path)
    rows = (
        _csv(path, field_name)
        if fmt == "csv"
        else _jsonl(path)
        if fmt == "jsonl"
        else _parquet(path, field_name)
    )
    for line, row in rows:
        if isinstance(row, BadRow):
            yield row
            continue
        value = row.get(field_name)
        if value is None:
            yield BadRow(line, f"no {field_name!r} field (fields: {', '.join(map(str, row)) or 'none'})")
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if not text.strip():
            yield BadRow(line, f"the {field_name!r} field is empty")
            continue
        raw_id = row.get(id_field)
        item_id = str(raw_id) if raw_id not in (None, "") else str(line)
        yield Item(item_id, text, line, row)


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    try:
        f = path.open(encoding="utf-8-sig", errors="strict")
    except OSError as exc:
        raise InputError(f"input {str(path)!r} cannot be read ({exc.strerror})") from None
    with f:
        n = 0
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield n, BadRow(n, f"not valid JSON ({exc.msg})")
                    continue
                if not isinstance(row, dict):
                    yield n, BadRow(n, f"a JSON {type(row).__name__}, not an object")
                    continue
                yield n, row
        except UnicodeDecodeError:
            raise InputError(
                f"input {str(path)!r} is not UTF-8 text near line {n + 1}: save it as UTF-8"
            ) from None


def _missing_column(path: Path, field_name: str, columns: list[str]) -> InputError:
    return InputError(
        f"input {str(path)!r} has no {field_name!r} column (columns: {', '.join(columns) or 'none'}): "
        "pass --field NAME"
    )


def _csv(path: Path, field_name: str) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    try:
        f = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"input {str(path)!r} cannot be read ({exc.strerror})") from None
    with f:
        try:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise InputError(f"input {str(path)!r} has no header row: add one naming the columns")
            columns = [c.strip() for c in reader.fieldnames]
            if field_name not in columns:
                raise _missing_column(path, field_name, columns)
            for row in reader:
                line = reader.line_num
                if None in row:  # more cells than the header names
                    yield (
                        line,
                        BadRow(line, f"{len(row) - 1 + len(row[None])} cells for {len(row) - 1} columns"),
                    )
                    continue
                yield line, {(k or "").strip(): v for k, v in row.items()}
        except csv.Error as exc:
            raise InputError(f"input {str(path)!r} is not valid CSV: {exc}") from None
        except UnicodeDecodeError:
            raise InputError(f"input {str(path)!r} is not UTF-8 text: save it as UTF-8") from None


def _parquet(path: Path, field_name: str) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("Parquet input needs pyarrow: pip install 'tierwise[scale]'") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError variants
        raise InputError(f"input {str(path)!r} is not a readable Parquet file ({exc})") from None
    columns = list(pf.schema_arrow.names)
    if field_name not in columns:
        raise _missing_column(path, field_name, columns)
    n = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            n += 1
            yield n, row
