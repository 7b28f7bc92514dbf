"""Shared CLI plumbing: the config option, clean one-line errors, JSON output."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from tierwise.errors import TierwiseError

if TYPE_CHECKING:
    from tierwise.cli.progress import Watch
    from tierwise.config import Config  # pydantic and the model catalog: loaded by the first load_config()

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)

_state: dict[str, Any] = {"config_path": None}


def set_config_path(path: Path | None) -> None:
    _state["config_path"] = path


def load_config() -> Config:
    from tierwise.config import Config

    return Config.load(_state["config_path"])


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear line on stderr, redacted, and return the Exit to raise."""
    from tierwise.ledger.redact import redact  # loads SQLAlchemy with the ledger: only when failing

    # An error may quote model output or a provider's reply, and either may hold a key.
    message = redact(message)
    # The message is plain text: brackets such as [[models]] or [local] must not be read as markup.
    err_console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run_async(fn: Callable[[], Awaitable[T]], watch: Watch | None = None) -> T:
    """Run a coroutine, turning tierwise's errors into one line and a non-zero exit.

    Ctrl-C or SIGTERM cancels the coroutine, so its ``async with`` blocks unwind (the run is recorded
    ``interrupted``, calls in flight are cancelled), waits at most ``UNWIND_S`` for that, says which run
    stopped and how to go on (``watch`` knows), and exits 130. A second signal exits at once.
    """
    from tierwise.cli.interrupt import Interrupted, run_interruptible

    try:
        return run_interruptible(fn, watch)
    except Interrupted as exc:
        raise typer.Exit(exc.code) from None
    except TierwiseError as exc:
        raise fail(str(exc)) from None
    finally:
        if watch is not None:
            watch.stop()  # the live view is cleared before the command prints its result or error


def check_budget(budget: float | None) -> float | None:
    """A --budget option: a positive, finite amount in USD, or none."""
    # `not budget > 0` rather than `budget <= 0`: NaN compares false both ways, and would disable the cap.
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise fail(f"--budget must be greater than 0 and finite, got {budget}: pass an amount in USD")
    return budget


def guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except TierwiseError as exc:
        raise fail(str(exc)) from None


def print_json(data: Any) -> None:
    """``--json`` output, redacted: it echoes goals and quotes model output, and ends up in files."""
    from tierwise.ledger.redact import redact_obj

    # Each string before encoding: an escaped quote or backslash would hide a key from the patterns.
    sys.stdout.write(json.dumps(redact_obj(data), indent=2, default=str, ensure_ascii=False) + "\n")
