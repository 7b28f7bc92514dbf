"""Run a command's coroutine so that Ctrl-C and SIGTERM stop it within seconds and leave the run recorded.

``asyncio.run`` gets the first Ctrl-C right (it cancels the main task) but then waits, unbounded, for the
worker threads to finish: a local model's queued generations kept a run alive for minutes, a second Ctrl-C
did nothing, and SIGTERM killed the process with the run left ``running``. Here both signals cancel the
main task, its ``async with`` blocks unwind (``Session.run`` records the run ``interrupted``, calls in
flight are cancelled and recorded), and the process exits 130 after at most ``UNWIND_S``, leaving any
thread still generating behind. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from rich.text import Text

from tierwise.cli.common import err_console

if TYPE_CHECKING:
    from tierwise.cli.progress import Watch

T = TypeVar("T")
UNWIND_S = 1.5  # the longest a cancelled run may take to record itself before the process just exits
EXIT_CODE = 130  # 128 + SIGINT, what shells expect of an interrupted command
SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)


class Interrupted(Exception):
    """The command was interrupted; its hint is printed, the caller exits with ``code``."""

    def __init__(self, code: int = EXIT_CODE) -> None:
        super().__init__("interrupted")
        self.code = code


def _say(line: str) -> None:
    err_console.print(Text(line, style="yellow"), highlight=False, soft_wrap=True)


def _hint(watch: Watch | None) -> str:
    if watch is None:
        return "interrupted: the run is recorded as interrupted (see `tierwise runs`)"
    return watch.interrupted_hint()


def _exit_now(line: str, watch: Watch | None) -> None:
    if watch is not None:
        watch.stop()
    _say(line)
    _exit_quietly()


def run_interruptible(fn: Callable[[], Awaitable[T]], watch: Watch | None = None) -> T:
    loop = asyncio.new_event_loop()
    # Our own pool, so that an interrupted run can drop the calls queued on it instead of waiting for them.
    executor = ThreadPoolExecutor(thread_name_prefix="tierwise-worker")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    task = loop.create_task(fn())  # type: ignore[arg-type]
    received: list[int] = []
    # A thread, not a loop timer: it fires even when the loop is stuck in synchronous work.
    deadline = threading.Timer(UNWIND_S, lambda: _too_slow(task, watch))
    deadline.daemon = True

    def on_signal(signum: int, frame: object) -> None:
        # Runs in the main thread between bytecodes, as asyncio.Runner's own SIGINT handler does.
        if received:  # the second Ctrl-C: the user means it
            _exit_now("interrupted again: quitting now", watch)
        received.append(signum)
        if watch is not None:
            watch.stop()  # the terminal is restored before anything else is printed
        _say("interrupting: cancelling calls in flight (press Ctrl-C again to quit at once)")
        task.cancel()
        loop.call_soon_threadsafe(lambda: None)  # wake the loop if it sleeps in select()
        deadline.start()

    previous = _install(on_signal)
    try:
        try:
            return loop.run_until_complete(task)
        finally:
            _close(loop, executor, fast=bool(received))
            deadline.cancel()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except BaseException as exc:
        # Whatever the cancelled run turned into (CancelledError, an error a layer raised on the way out),
        # a signal decides: the run was interrupted. Without our handlers (not the main thread), Ctrl-C
        # arrives as KeyboardInterrupt.
        if not received and not isinstance(exc, KeyboardInterrupt):
            raise
        if watch is not None:
            watch.stop()
        _say(_hint(watch))
        if _lingering(deadline=time.monotonic() + 0.3):
            _exit_quietly()
        raise Interrupted(EXIT_CODE) from None


def _too_slow(task: asyncio.Task[object], watch: Watch | None) -> None:
    if not task.done():
        _exit_now(f"{_hint(watch)} (it did not finish unwinding within {UNWIND_S:g} s)", watch)


def _install(handler: Callable[[int, object], None]) -> dict[int, object]:
    """Install ``handler`` for SIGINT and SIGTERM; returns the handlers it replaced."""
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous  # signals are delivered to the main thread only
    for sig in SIGNALS:
        try:
            previous[sig] = signal.signal(sig, handler)
        except (OSError, ValueError):  # an embedded interpreter that keeps signals to itself
            continue
    return previous


def _close(loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, *, fast: bool) -> None:
    """What ``asyncio.run`` does on the way out; after a signal, each wait is bounded."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=0.5 if fast else None))
        loop.run_until_complete(_bounded(loop.shutdown_asyncgens(), 0.5 if fast else None))
        # A thread cannot be cancelled: after a signal, calls still queued are dropped and the ones
        # running are left behind (the process exits without them).
        executor.shutdown(wait=not fast, cancel_futures=fast)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def _bounded(aw: Awaitable[None], timeout: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(aw, timeout)


def _lingering(deadline: float) -> bool:
    """Whether a non-daemon thread (a model generating in a worker) would hold the exit up."""
    for t in threading.enumerate():
        if t is threading.main_thread() or t.daemon:
            continue
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            return True
    return False


def _exit_quietly() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_CODE)  # not sys.exit: interpreter shutdown would join the threads still generating
