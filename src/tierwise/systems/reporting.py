"""Helpers every system shares: its spend from the ledger, its output files, its cost line.

Three jobs, kept tiny so the five systems report alike:

- ``spend_fields(await scope.spend())``: the spend keys every system's JSON result carries (the spend
  itself comes from ``Scope.spend``, the one spend path).
- ``check_out(out, extensions)`` before a run, ``write_outputs(out, formats)`` after it: the primary output
  in the format ``--out``'s extension names, every other format beside it (same stem, its own extension).
- ``cost_line(summary)`` / ``print_cost_line(summary)``: one line with the total and the all-large
  counterfactual, marked notional when local models' notional prices are in it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from tierwise.errors import InputError

__all__ = ["check_out", "cost_line", "print_cost_line", "spend_fields", "write_outputs"]


def spend_fields(spend: Mapping[str, Any]) -> dict[str, Any]:
    """The spend keys every system's JSON result carries, from a ``Scope.spend()`` summary."""
    return {
        "total_cost_usd": spend.get("total_cost_usd"),
        "cost_per_tier": spend.get("cost_per_tier", {}),
        "cost_per_step": spend.get("cost_per_step", {}),
        "all_large_counterfactual_usd": spend.get("all_large_counterfactual_usd"),
        "notional": spend.get("notional", False),
    }


def _ext(name: str) -> str:
    return name.lower().lstrip(".")


def check_out(out: Path, extensions: Iterable[str]) -> str:
    """The format ``out`` asks for (its extension, lower case, no dot), or InputError naming the choices.

    Call it before the run so a typo in ``--out`` costs nothing.
    """
    allowed = [_ext(e) for e in extensions]
    ext = _ext(out.suffix)
    if ext not in allowed:
        choices = ", ".join("." + e for e in allowed)
        raise InputError(f"--out {str(out)!r} must end in one of {choices}: the extension picks the format")
    if out.exists() and out.is_dir():
        raise InputError(f"--out {str(out)!r} is a directory: pass a file name such as report.{allowed[0]}")
    return ext


def write_outputs(out: Path, formats: Mapping[str, Callable[[], str]]) -> list[Path]:
    """Write the format named by ``out``'s extension to ``out`` and every other one beside it.

    ``formats`` maps an extension (``"md"``, ``"json"``, ``"sarif"``; a leading dot is ignored) to a
    function rendering that format. Returns the paths written, the primary one first.
    """
    table = {_ext(k): render for k, render in formats.items()}
    primary = check_out(out, table)
    order = [primary, *(e for e in table if e != primary)]
    written: list[Path] = []
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for ext in order:
            path = out if ext == primary else out.with_suffix("." + ext)
            path.write_text(table[ext](), encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise InputError(f"cannot write the output beside --out {str(out)!r}: {exc}") from None
    return written


def _money(value: object) -> str:
    return "unknown" if not isinstance(value, (int, float)) else f"${value:.6f}"


def cost_line(summary: Mapping[str, Any]) -> str:
    """``total cost $X · all-large counterfactual $Y (saved N%)``, with ``(notional)`` when it applies."""
    total = summary.get("total_cost_usd")
    large = summary.get("all_large_counterfactual_usd")
    mark = (
        " (notional: local models priced like their tier's gpt-5.4 model)" if summary.get("notional") else ""
    )
    line = f"total cost {_money(total)} · all-large counterfactual {_money(large)}"
    if isinstance(total, (int, float)) and isinstance(large, (int, float)) and large > 0:
        line += f" (saved {100 * (1 - total / large):.0f}%)"
    if summary.get("cost_unknown_for_some_calls"):
        line += " · some calls have no known price"
    return line + mark


def print_cost_line(summary: Mapping[str, Any], file: TextIO | None = None) -> None:
    """Print ``cost_line(summary)`` (to stdout unless ``file`` is given; pass sys.stderr beside --json)."""
    print(cost_line(summary), file=file or sys.stdout)
