"""What a run is doing right now, for whoever watches it (a live view on a terminal, log lines, a page).

Systems name their stages and count their items (``stage``, ``advance``); every call that goes through
the one path adds itself (calls, spend) from the recorder. Listeners are called synchronously with the
new state; they must be quick (a live view redraws on its own clock).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar


@dataclass(frozen=True, slots=True)
class ProgressState:
    stage: str = ""
    done: int = 0
    total: int | None = None
    calls: int = 0
    failed_calls: int = 0
    spent_usd: float = 0.0
    note: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


Listener = Callable[[ProgressState], None]
T = TypeVar("T")


class Progress:
    def __init__(self) -> None:
        self.state = ProgressState()
        self._listeners: list[Listener] = []

    def listen(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn`` on every change; returns a function that stops it."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def stage(self, name: str, total: int | None = None, note: str = "") -> None:
        """A new stage begins: its name and, when known, how many items it has."""
        self._set(replace(self.state, stage=name, done=0, total=total, note=note))

    def advance(self, n: int = 1, note: str = "") -> None:
        self._set(replace(self.state, done=self.state.done + n, note=note or self.state.note))

    async def each(self, aw: Awaitable[T]) -> T:
        """Await one item's work and count it done: ``gather(*(progress.each(f(x)) for x in xs))``."""
        result = await aw
        self.advance()
        return result

    def on_call(self, cost: float | None, status: str) -> None:
        failed = status not in ("ok", "overrun", "opinion")  # an opinion: one answer of a cascade's vote
        self._set(
            replace(
                self.state,
                calls=self.state.calls + 1,
                failed_calls=self.state.failed_calls + int(failed),
                spent_usd=self.state.spent_usd + (cost or 0.0),
            )
        )

    def _set(self, state: ProgressState) -> None:
        self.state = state
        for fn in list(self._listeners):
            fn(state)
