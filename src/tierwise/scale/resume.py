"""What a batch already did: rows in the output journal, and rows the ledger holds (block records), so the
same command run again skips them and pays for nothing twice.

The output names its batch in a small marker file beside it (``OUT.batch.json``: the command's key and
the run id), so a re-run resumes that run, and a different batch is never appended to the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierwise.errors import InputError

ROWS_STEP = "rows:"  # ledger step ids of recorded row blocks


@dataclass(frozen=True, slots=True)
class Marker:
    key: str
    run_id: str


def batch_key(parts: dict[str, Any]) -> str:
    """A hash of what decides the rows (input, task, labels, schema, prompt, tier): same command, same key."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def marker_path(out: Path) -> Path:
    return out.with_name(out.name + ".batch.json")


def read_marker(out: Path) -> Marker | None:
    try:
        data = json.loads(marker_path(out).read_text("utf-8"))
        return Marker(str(data["key"]), str(data["run_id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_marker(out: Path, marker: Marker) -> None:
    path = marker_path(out)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": marker.key, "run_id": marker.run_id}), "utf-8")
    tmp.replace(path)


def check_same_batch(out: Path, journal: Path, key: str) -> Marker | None:
    """The earlier run of this very batch, or None for a fresh one; refuses a journal of another batch."""
    marker = read_marker(out)
    has_rows = journal.is_file() and journal.stat().st_size > 0
    if marker is not None and marker.key == key:
        return marker
    if has_rows or (marker is not None and out.exists()):
        raise InputError(
            f"output {str(out)!r} holds results of a different batch: pass another --out, or delete it "
            f"(and {marker_path(out).name}) to start over"
        )
    return None


def done_rows(journal: Path) -> set[str]:
    """Ids of items the journal answered without an error; cuts a torn last line (a killed write) off."""
    done: set[str] = set()
    if not journal.is_file():
        return done
    good = 0  # byte offset after the last complete line
    with journal.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            good += len(raw)
            try:
                r = json.loads(raw)
            except ValueError:
                continue
            if isinstance(r, dict) and r.get("error") is None and "id" in r:
                done.add(str(r["id"]))
    if good < journal.stat().st_size:
        with journal.open("r+b") as f:
            f.truncate(good)
    return done


def ledger_rows(finished: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the blocks an earlier attempt recorded in the ledger (``scope.finished``)."""
    rows: list[dict[str, Any]] = []
    for step_id, rec in finished.items():
        if not step_id.startswith(ROWS_STEP) or not rec.output:
            continue
        try:
            block = json.loads(rec.output)
        except ValueError:
            continue
        rows.extend(r for r in block if isinstance(r, dict) and "id" in r and r.get("error") is None)
    return rows
