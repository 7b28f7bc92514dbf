"""What a long command shows while it runs, from the run's ``scope.progress``.

On a terminal: a rich live view on stderr (stage, items done of total, calls, spend against the budget,
elapsed), redrawn on its own clock and cleared when the command ends. Piped: plain lines on stderr, at
most one a second plus stage changes, and none in the first second, so a command that ends or fails at
once prints exactly what it printed before. stdout is never touched: ``--json`` output stays one document.

A ``Watch`` also remembers the run it watched, so that an interrupted command can say which run stopped
and how to go on (see ``common.run_async``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from tierwise.cli.common import err_console

if TYPE_CHECKING:  # the runtime loads only when a command runs
    from tierwise.runtime.progress import ProgressState
    from tierwise.runtime.scope import Scope

QUIET_S = 1.0  # piped: nothing before this much time has passed, nor before the run made progress (a
SLOW_START_S = 8.0  # call answered, an item done), unless it is this slow: a fast failure stays one line
EVERY_S = 1.0  # piped: at most one line per this many seconds, stage changes aside
HEARTBEAT_S = 15.0  # piped: a line this often even when nothing changed (one long call), to show it lives


def money(v: float) -> str:
    if 0 < v < 1e-6:
        return f"${v:.2g}"  # a tiny cap must not read $0.000000
    return f"${v:.6f}" if v < 1 else f"${v:,.2f}"


def status_line(
    state: ProgressState | None, cap_usd: float | None, since: float, prior_usd: float = 0.0, label: str = ""
) -> str:
    """One line: stage, items, calls, spend (of the cap) and elapsed time."""
    elapsed = time.monotonic() - since
    parts = [label] if label else []
    if state is None or not state.stage:
        parts.append("starting")
    else:
        items = f" {state.done}/{state.total}" if state.total is not None else ""
        items += f" ({state.done} done)" if state.total is None and state.done else ""
        parts.append(f"{state.stage}{items}")
    if state is not None:
        failed = f" ({state.failed_calls} failed)" if state.failed_calls else ""
        parts.append(f"{state.calls} call{'s' if state.calls != 1 else ''}{failed}")
        spent = prior_usd + state.spent_usd
        parts.append(money(spent) + (f" of {money(cap_usd)} budget" if cap_usd is not None else ""))
    parts.append(f"{int(elapsed // 60)}:{int(elapsed % 60):02d}")
    line = " · ".join(parts)
    if state is not None and state.note:
        line += f" · {state.note[:60]}"
    return line


class Watch:
    """Shows one command's runs; ``quiet`` shows nothing (the run id is still remembered)."""

    def __init__(self, *, quiet: bool = False, resumable: bool = False) -> None:
        self.quiet = quiet
        self.resumable = resumable  # an orchestration: `tierwise resume RUN_ID` continues it
        self.run_id: str | None = None
        self.extra: Callable[[], RenderableType | None] | None = None  # e.g. orchestrate's step table
        self._state: ProgressState | None = None
        self._cap: float | None = None
        self._prior = 0.0
        self._label = ""
        self._since = time.monotonic()
        self._stops: list[Callable[[], None]] = []
        self._live: Live | None = None
        self._last_line = 0.0
        self._last_stage: str | None = None
        self._printed = False
        self._pending = False  # a change not printed yet (throttled, or in the quiet first second)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stopped = False
        if quiet:
            return
        if err_console.is_terminal:
            self._live = Live(
                self, console=err_console, refresh_per_second=4, transient=True, redirect_stdout=False
            )
            self._live.start()
        else:
            # Changes held back by the throttle are printed on this clock, so the last one is not lost.
            threading.Thread(target=self._tick, name="tierwise-progress", daemon=True).start()

    # --- the run --------------------------------------------------------------------------------------

    def attach(self, scope: Scope, label: str = "") -> Scope:
        """Follow ``scope``'s progress (a new run replaces the one before, as in eval swap's arms)."""
        for stop in self._stops:
            stop()
        self._stops.clear()
        self.run_id, self._label = scope.id, label
        self._cap = scope.budget.caps.usd
        # A resumed run's cap covers its earlier attempts: what they spent is already on the budget.
        self._prior = scope.budget.spent_usd
        self._stops.append(scope.progress.listen(self._update))
        self._update(scope.progress.state)
        return scope

    def _update(self, state: ProgressState) -> None:
        self._state = state
        if self.quiet or self._live is not None or self._stopped:
            return  # the live view reads the state on its own clock
        self._pending = True
        self._maybe_print(time.monotonic())

    def _maybe_print(self, now: float, heartbeat: bool = False) -> None:
        with self._lock:
            if self._stopped or not self._first_line_due(now):
                return
            stage = self._state.stage if self._state is not None else None
            changed = stage != self._last_stage
            due = self._pending and now - self._last_line >= EVERY_S
            if changed or due or heartbeat or not self._printed:
                self._last_line, self._last_stage, self._pending = now, stage, False
                self._printed = True
                self.say(self.line())

    def _first_line_due(self, now: float) -> bool:
        if self._printed or now - self._since >= SLOW_START_S:
            return True  # a line was printed already, or the start is slow enough to say so
        st = self._state
        progressed = st is not None and st.calls > st.failed_calls  # an item can be "done" by failing
        return progressed and now - self._since >= QUIET_S

    def _tick(self) -> None:
        while not self._done.wait(0.25):
            now = time.monotonic()
            self._maybe_print(now, heartbeat=now - max(self._last_line, self._since) >= HEARTBEAT_S)

    def line(self) -> str:
        return status_line(self._state, self._cap, self._since, self._prior, self._label)

    def say(self, line: str) -> None:
        """A line on stderr, above the live view when there is one."""
        if not self.quiet:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __rich__(self) -> RenderableType:
        line = Text(self.line(), style="dim")
        head = Table.grid(padding=(0, 1))
        head.add_row(Spinner("dots", style="cyan"), line)
        rows: list[RenderableType] = []
        extra = self.extra() if self.extra is not None else None
        if extra is not None:
            rows.append(extra)
        st = self._state
        if st is not None and st.total:
            bar = ProgressBar(total=st.total, completed=min(st.done, st.total), width=40)
            head.add_row(Text(""), bar)
        rows.append(head)
        return Group(*rows)

    # --- the end --------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop showing (idempotent): the live view is cleared before anything else is printed."""
        if self._stopped:
            return
        with self._lock:
            self._stopped = True
        self._done.set()
        for stop in self._stops:
            stop()
        if self._live is not None:
            self._live.stop()

    def interrupted_hint(self) -> str:
        """What an interrupted command says: which run stopped and how to go on."""
        if self.run_id is None:
            return "interrupted before a run was recorded: nothing was spent; run the command again"
        rid = self.run_id
        if self.resumable:
            return (
                f"interrupted: run {rid} is recorded as interrupted; continue it with "
                f"`tierwise resume {rid}` (finished steps are not paid for again)"
            )
        return (
            f"interrupted: run {rid} is recorded as interrupted (see `tierwise runs show {rid}`); "
            "run the same command again to start over"
        )

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
