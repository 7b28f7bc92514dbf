"""Support triage inputs: tickets, labels, examples and the knowledge base; plus the urgency scorer.

Every loader raises ``InputError`` naming the file and what to fix, so the CLI prints one line.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tierwise.errors import InputError

URGENCIES = ("low", "normal", "high", "critical")


@dataclass(frozen=True, slots=True)
class Ticket:
    text: str
    category: str | None = None  # the expected intent, when the input carries one (for accuracy)


def _read(path: Path, what: str) -> str:
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} not found: check the path")
    try:
        return path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {str(path)!r} cannot be read ({exc}): pass a UTF-8 text file") from None


def _csv_rows(path: Path, what: str, needed: tuple[str, ...]) -> list[dict[str, str]]:
    text = _read(path, what)
    try:
        reader = csv.DictReader(text.splitlines())
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in needed if c not in columns]
        if missing:
            raise InputError(
                f"{what} {str(path)!r} has no {', '.join(repr(m) for m in missing)} column "
                f"(columns: {', '.join(columns) or 'none'}): add a header row with {','.join(needed)}"
            )
        return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    except csv.Error as exc:
        raise InputError(f"{what} {str(path)!r} is not valid CSV: {exc}") from None


def read_tickets(path: Path) -> list[Ticket]:
    """Tickets from CSV (a ``text`` column, optional ``category``) or JSONL (objects with ``text``)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows: list[dict[str, str]] = _csv_rows(path, "ticket file", ("text",))
    elif suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(_read(path, "ticket file").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"ticket file {str(path)!r} line {n} is not JSON: {exc.msg}") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise InputError(f'ticket file {str(path)!r} line {n} has no string "text" field')
            rows.append({k: str(v) for k, v in obj.items() if v is not None})
    else:
        raise InputError(
            f"ticket file {str(path)!r} must be .csv or .jsonl, got {suffix or 'no extension'!r}"
        )
    tickets = [Ticket(r["text"].strip(), (r.get("category") or "").strip() or None) for r in rows]
    tickets = [t for t in tickets if t.text]
    if not tickets:
        raise InputError(f"ticket file {str(path)!r} has no tickets: add rows with a non-empty text")
    return tickets


def read_labels(path: Path) -> list[str]:
    """Labels as a JSON list of strings, or one per line."""
    text = _read(path, "labels file").strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"labels file {str(path)!r} is not a valid JSON list: {exc.msg}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise InputError(f"labels file {str(path)!r} must be a JSON list of non-empty strings")
        labels = [v.strip() for v in value]
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    labels = list(dict.fromkeys(labels))
    if len(labels) < 2:
        raise InputError(f"labels file {str(path)!r} names {len(labels)} label(s): give at least 2")
    return labels


def read_examples(path: Path) -> tuple[list[str], list[str]]:
    """Labelled examples from a ``text,category`` CSV."""
    rows = _csv_rows(path, "examples file", ("text", "category"))
    pairs = [
        (r["text"].strip(), r["category"].strip())
        for r in rows
        if r["text"].strip() and r["category"].strip()
    ]
    if len({c for _, c in pairs}) < 2:
        raise InputError(f"examples file {str(path)!r} needs labelled rows of at least 2 categories")
    return [t for t, _ in pairs], [c for _, c in pairs]


def read_kb(folder: Path, max_chars: int = 600) -> list[tuple[str, str]]:
    """Knowledge-base passages ``(file name, passage)``: paragraphs of every .md/.txt file, cut to size."""
    if not folder.is_dir():
        raise InputError(f"knowledge-base folder {str(folder)!r} not found: pass a folder of .md/.txt files")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".md", ".txt"))
    if not files:
        raise InputError(f"knowledge-base folder {str(folder)!r} has no .md or .txt files")
    passages: list[tuple[str, str]] = []
    for file in files:
        for para in re.split(r"\n\s*\n", _read(file, "knowledge-base file")):
            para = " ".join(para.split())
            for i in range(0, len(para), max_chars):
                if para[i : i + max_chars].strip():
                    passages.append((file.relative_to(folder).as_posix(), para[i : i + max_chars]))
    return passages


# --- urgency ----------------------------------------------------------------------------------------
# A keyword scorer over the ticket text and the predicted intent's name (intent names such as
# "compromised_card" or "lost_or_stolen_phone" carry the signal too, whatever the label set). It is a
# nano step with no model call: transparent, instant, and easy to override per deployment.
_CRITICAL = re.compile(
    r"\b(fraud\w*|stolen|hack\w*|compromis\w*|unauthori[sz]ed|scam\w*|identity theft|emergency|"
    r"someone (else )?(used|took|accessed|has)|not me|didn'?t make|locked out|all my money|lawsuit|police)\b",
    re.I,
)
_HIGH = re.compile(
    r"\b(urgent\w*|asap|immediately|right now|still (not|hasn'?t|haven'?t)|never (arrived|received|came)|"
    r"declined|rejected|blocked|frozen|failed|missing|lost|charged twice|double charged|overcharged|"
    r"wrong amount|refund|can'?t access|cannot access|not working|doesn'?t work|angry|unacceptable|"
    r"terrible|worst|cancel\w*)\b",
    re.I,
)
_LOW = re.compile(
    r"\b(how (do|can|does|long|much)|what (is|are)|is it possible|can i|could you tell|wondering|"
    r"information|info|curious|question|explain|where can i find|do you (support|offer|accept))\b",
    re.I,
)


def urgency_of(text: str, intent: str) -> str:
    """low | normal | high | critical from keywords in the text and the intent's name."""
    words = f"{text} {intent.replace('_', ' ')}"
    if _CRITICAL.search(words):
        return "critical"
    score = len(_HIGH.findall(words)) + text.count("!") // 2 - (1 if _LOW.search(text) else 0)
    if score >= 1:
        return "high"
    if _LOW.search(text) and score <= -1:
        return "low"
    return "normal"
