"""The output file, written while the run goes: each ticket's JSON line as soon as it is done.

Lines keep the input's order: a finished ticket waits only for the tickets before it (at most the
pipeline's concurrency), so the file grows ticket by ticket and an interrupted run keeps what it finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from tierwise.errors import InputError

if TYPE_CHECKING:
    from tierwise.systems.support_triage.pipeline import TriageItem


class LineWriter:
    """``with LineWriter(path) as w: await triage(..., on_item=w)``; ``w.written`` counts lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._waiting: dict[int, TriageItem] = {}
        self._file: TextIO | None = None

    def __enter__(self) -> LineWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise InputError(
                f"cannot write the output file {str(self.path)!r} ({exc.strerror or exc}): "
                "pass a writable path"
            ) from None
        return self

    def __call__(self, index: int, item: TriageItem) -> None:
        """Ticket ``index`` is done: write it, and any finished tickets it was holding back."""
        if self._file is None:
            raise RuntimeError("LineWriter used outside its `with` block")
        self._waiting[index] = item
        while self.written in self._waiting:
            line = self._waiting.pop(self.written).to_line()
            self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.written += 1
        self._file.flush()  # a reader (tail -f, a pipeline) sees each line when it is written

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # Also an async context manager, so it sits in one ``async with`` beside the session and the run.
    async def __aenter__(self) -> LineWriter:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)
