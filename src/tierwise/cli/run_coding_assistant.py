"""``tierwise run coding-assistant --repo PATH "request"``: an answer or a checked diff for a repository."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tierwise.cli.common import (
    check_budget,
    console,
    err_console,
    guarded,
    load_config,
    print_json,
    run_async,
)

if TYPE_CHECKING:  # the system and its dependencies load only when the command runs
    from tierwise.systems.coding_assistant import CodingResult, Mode

FORMATS = ("md", "diff", "patch", "json")


def outputs(out: Path, result: CodingResult) -> list[Path]:
    """``--out``'s format plus JSON beside it. A .diff/.patch is written only for a diff git accepted."""
    from tierwise.systems.reporting import write_outputs

    as_json = lambda: json.dumps(result.to_dict(), indent=2, default=str, ensure_ascii=False) + "\n"  # noqa: E731
    ext = out.suffix.lower().lstrip(".")
    formats: dict[str, Callable[[], str]] = {"json": as_json}
    if ext == "md":
        formats["md"] = result.to_markdown
    elif ext in ("diff", "patch"):
        if result.diff is None:
            # Never leave a file that looks like an applicable patch; the JSON says why there is none.
            return write_outputs(out.with_suffix(".json"), formats)
        formats[ext] = lambda: result.diff or ""
    return write_outputs(out, formats)


def _show(d: dict[str, Any]) -> None:
    console.print(d["answer"] or "(no answer)", markup=False, highlight=False)
    if d["diff"]:
        console.print("\n--- proposed diff (git apply --check: ok) ---", style="green")
        console.print(d["diff"], markup=False, highlight=False)


def _warn(d: dict[str, Any]) -> None:
    if d["mode"] == "diff" and not d["diff_applies"]:
        err_console.print(
            f"warning: no applicable diff ({d['diff_error'] or 'none given'}); not shown", style="yellow",
            markup=False, highlight=False,
        )  # fmt: skip
    for w in d["warnings"]:
        err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``coding-assistant`` to ``tierwise run``."""

    @app.command("coding-assistant")
    def coding_assistant_cmd(
        request: Annotated[str, typer.Argument(help="the question or change request")],
        repo: Annotated[Path, typer.Option("--repo", help="root of the git repository")],
        out: Annotated[
            Path | None,
            typer.Option(
                "--out", help="write here: .md answer or .diff/.patch change (JSON beside), or .json"
            ),
        ] = None,
        budget: Annotated[float | None, typer.Option("--budget", help="cap on this run's spend, USD")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    ) -> None:
        """Answer REQUEST about --repo or propose a diff: large plans and synthesizes, mini inspects files."""
        from tierwise.cli.progress import Watch
        from tierwise.session import Session
        from tierwise.systems import coding_assistant as ca
        from tierwise.systems.reporting import check_out, print_cost_line

        check_budget(budget)
        mode: Mode | None = None
        if out is not None:
            ext = guarded(lambda: check_out(out, FORMATS))
            # A .diff/.patch asks for a change, a .md for an answer; .json leaves it to the planner.
            mode = "diff" if ext in ("diff", "patch") else "answer" if ext == "md" else None
        ws = guarded(lambda: ca.check_inputs(repo, request))

        async def go() -> CodingResult:
            meta = ca.run_metadata(ws, mode)
            async with (
                Session(load_config(), budget_usd=budget) as s,
                s.run(ca.SYSTEM, ca.run_label(request), budget_usd=budget, metadata=meta) as scope,
            ):
                watch.attach(scope)
                return await ca.run(scope, ws, request, mode=mode)

        watch = Watch()
        result = run_async(go, watch)
        d = result.to_dict()
        if out is not None:
            guarded(lambda: outputs(out, result))
        _warn(d)
        if as_json:
            print_json(d)
        else:
            _show(d)
        print_cost_line(result.spend, file=sys.stderr if as_json else None)
