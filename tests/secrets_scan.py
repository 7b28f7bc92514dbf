"""Planted secrets and the scanner that looks for them in everything a test run writes.

``tests/conftest.py`` puts the planted values in the environment for the whole run (as a user's keys
would be); a test that leaks one into a file under pytest's base temp directory fails the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

# Shaped like an OpenAI project key: redacted by its format and by its variable's name.
PLANTED_KEY = "sk-proj-PLANTED0tierwise0scan0" + "Zq7" * 10
# No recognisable format: only the environment-variable rule (name ends in _TOKEN) can catch it.
PLANTED_TOKEN = "planted-opaque-4f7c1e9a2b"
PLANTED_ENV = {"TIERWISE_PLANTED_API_KEY": PLANTED_KEY, "TIERWISE_PLANTED_TOKEN": PLANTED_TOKEN}
PLANTED = (PLANTED_KEY, PLANTED_TOKEN)

_CHUNK = 1 << 20


def plant() -> None:
    """Put the planted values in the environment, as a user's keys would be.

    The chaos provider's key (``CHAOS_KEY``, sent on every request of the tests) is the opaque one,
    unless the environment already holds a real value, which is kept.
    """
    os.environ.update(PLANTED_ENV)
    os.environ.setdefault("CHAOS_KEY", PLANTED_TOKEN)


def found_in(data: bytes | str, needles: Iterable[str] = PLANTED) -> list[str]:
    """The needles that occur in ``data`` (text, or bytes as UTF-8)."""
    if isinstance(data, str):
        return [n for n in needles if n in data]
    return [n for n in needles if n.encode() in data]


def _files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, names in os.walk(root):  # does not follow symlinked directories
        for name in names:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                yield path


def file_hits(path: Path, needles: Iterable[str] = PLANTED) -> list[str]:
    """The needles in one file's bytes, read in chunks that overlap so none is missed at a boundary."""
    encoded = [n.encode() for n in needles]
    overlap = max((len(n) for n in encoded), default=1) - 1
    hits: set[bytes] = set()
    tail = b""
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                window = tail + chunk
                hits.update(n for n in encoded if n in window)
                tail = window[-overlap:] if overlap else b""
    except OSError:  # vanished or unreadable (a socket, a file another process removed): not written by us
        return []
    return sorted(n.decode() for n in hits)


def scan_tree(root: Path, needles: Iterable[str] = PLANTED) -> dict[Path, list[str]]:
    """Every regular file under ``root`` that holds a needle, with the needles it holds."""
    needles = tuple(needles)
    found: dict[Path, list[str]] = {}
    for path in _files(root):
        hits = file_hits(path, needles)
        if hits:
            found[path] = hits
    return found
