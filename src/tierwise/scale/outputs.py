"""Where batch rows go as they finish: JSONL appended and flushed (so a killed batch keeps every row it
wrote), or Parquet by extension (rows stream to a ``.partial.jsonl`` beside it and are converted in
bounded chunks when the batch ends). ``--ordered`` holds finished rows in a bounded window and writes
them in input order; the window also stops the executor from running too far ahead of the slowest item.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import IO, Any

from tierwise.errors import InputError

COLUMNS = ("id", "result", "tier", "model", "cost_usd", "reason", "error")
PARQUET_CHUNK = 8192


def journal_path(out: Path) -> Path:
    """The JSONL file rows are appended to: OUT itself, or OUT.partial.jsonl for Parquet."""
    return out.with_name(out.name + ".partial.jsonl") if is_parquet(out) else out


def is_parquet(out: Path) -> bool:
    return out.suffix.lower() == ".parquet"


def check_output(out: Path) -> None:
    if out.suffix.lower() not in (".jsonl", ".ndjson", ".parquet"):
        raise InputError(f"output {str(out)!r}: use a .jsonl or .parquet file name")
    if out.is_dir():
        raise InputError(f"output {str(out)!r} is a folder: name a file, e.g. results.jsonl")
    if not out.parent.is_dir():
        raise InputError(f"output folder {str(out.parent)!r} does not exist: create it first")


class RowWriter:
    """Appends rows to the journal; with ``window`` > 0, in input order (``seq``) within that window."""

    def __init__(self, out: Path, *, window: int = 0) -> None:
        check_output(out)
        self.out = out
        self.path = journal_path(out)
        self._f: IO[str] = self.path.open("a", encoding="utf-8")
        self.window = window
        self._next = 0  # ordered: the next seq to write
        self._held: dict[int, dict[str, Any] | None] = {}
        self._moved = asyncio.Event()
        self.written = 0

    async def slot(self, seq: int) -> None:
        """Wait until ``seq`` is within the window of the next row to write (no-op when unordered)."""
        while self.window and seq >= self._next + self.window:
            self._moved.clear()
            await self._moved.wait()

    def put(self, seq: int, row: dict[str, Any] | None) -> None:
        """A finished item's row (``None``: the seq was skipped, e.g. a bad input row)."""
        if not self.window:
            if row is not None:
                self._write(row)
            return
        self._held[seq] = row
        moved = False
        while self._next in self._held:
            r = self._held.pop(self._next)
            if r is not None:
                self._write(r)
            self._next += 1
            moved = True
        if moved:
            self._moved.set()

    def put_many(self, rows: list[tuple[int, dict[str, Any] | None]]) -> None:
        for seq, row in rows:
            self.put(seq, row)
        self.flush()

    def write_now(self, row: dict[str, Any]) -> None:
        """A row written at once, outside the ordered window (rows recovered from the ledger)."""
        self._write(row)

    def _write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self.written += 1

    def flush(self) -> None:
        self._f.flush()  # in the kernel: a SIGKILL of this process loses none of it

    def close(self) -> None:
        # Ordered: anything still held (a gap left by an item that never finished) is written as is.
        for seq in sorted(self._held):
            r = self._held.pop(seq)
            if r is not None:
                self._write(r)
        self._f.close()
        if is_parquet(self.out):
            to_parquet(self.path, self.out)


def to_parquet(journal: Path, out: Path) -> None:
    """Convert the journal to Parquet in bounded chunks (the journal stays: it is what resume reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("result", pa.string()),  # JSON text: results of one batch may differ in shape
            ("tier", pa.string()),
            ("model", pa.string()),
            ("cost_usd", pa.float64()),
            ("reason", pa.string()),
            ("error", pa.string()),
        ]
    )
    tmp = out.with_name(out.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer, journal.open(encoding="utf-8") as f:
        chunk: list[dict[str, Any]] = []
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a killed run: its item is not done, resume redoes it
            chunk.append({**row, "result": json.dumps(row.get("result"), ensure_ascii=False)})
            if len(chunk) >= PARQUET_CHUNK:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    tmp.replace(out)
