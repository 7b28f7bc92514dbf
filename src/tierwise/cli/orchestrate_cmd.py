"""``tierwise orchestrate GOAL`` and ``tierwise resume RUN_ID``, with a live progress display."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tierwise.cli.common import check_budget, console, err_console, fail, load_config, print_json, run_async

if TYPE_CHECKING:  # the runtime and its SDKs load only when the command runs
    from tierwise.orchestration import OrchestrationResult

_ICONS = {"waiting": "·", "running": "[yellow]…[/]", "done": "[green]✓[/]", "failed": "[red]✗[/]"}


class _Progress:
    """A table of steps and their status, redrawn as the executor reports events."""

    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {}
        self.live = Live(self._table(), console=err_console, refresh_per_second=8, transient=False)

    def _table(self) -> Table:
        t = Table(box=None, show_header=True, header_style="bold")
        for col in ("", "step", "tier", "cost"):
            t.add_column(col)
        for step, (status, tier, cost) in self.rows.items():
            t.add_row(_ICONS.get(status, escape(status)), escape(step), escape(tier), escape(cost))
        return t

    def event(self, event: str, step: str, info: Mapping[str, Any]) -> None:
        if not self.live.is_started:  # started on the first event: input errors print no empty table
            self.live.start()
        if event == "planned":
            for sid in info.get("steps", []):
                self.rows.setdefault(sid, ["waiting", "", ""])
        elif event in ("planning", "synthesis", "start"):
            self.rows[step] = ["running", str(info.get("tier", "")), ""]
        elif event == "done":
            cost = info.get("cost")
            self.rows[step] = ["done", str(info.get("tier", "")), f"${cost:.6f}" if cost is not None else "?"]
        elif event == "failed":
            self.rows[step] = ["failed", "", str(info.get("error", ""))[:60]]
        self.live.update(self._table())

    def stop(self) -> None:
        if not self.live.is_started:
            return
        self.live.stop()
        if not err_console.is_terminal:
            # Off a terminal rich ends the table without a newline: an error after it would share its line.
            err_console.line()


def _show(result: OrchestrationResult) -> None:
    d = result.to_dict()
    console.print("\n[bold]Answer[/]")
    console.print(f"{d['answer']}\n", highlight=False, markup=False)  # the model's text, never markup
    t = Table(title=f"run {d['run_id']}", show_lines=False)
    for col in ("step", "kind", "tier", "model", "status", "cost USD"):
        t.add_column(col)
    for s in d["steps"]:
        cost = s["cost_usd"]
        cells = (s["id"], s["kind"], s["tier"], s["model"] or "", s["status"])
        t.add_row(*map(escape, cells), f"{cost:.6f}" if cost else "")
    console.print(t)
    suffix = " (notional)" if d["notional"] else ""
    total, cf = d["total_cost_usd"], d["all_large_counterfactual_usd"]
    per_tier = ", ".join(f"{k} ${v:.6f}" for k, v in sorted(d["cost_per_tier"].items()))
    console.print(f"total ${total or 0:.6f}{suffix} — per tier: {per_tier}")
    if cf is not None:
        console.print(f"all-large counterfactual ${cf:.6f}")
    ov = d["overhead"]
    console.print(
        f"orchestration/execution tokens: {ov.get('orchestration_tokens')}/{ov.get('execution_tokens')} "
        f"(ratio {ov.get('ratio')})"
    )
    if d["fallback_plan"]:
        console.print("[yellow]the built-in fallback plan was used[/]")
    for w in d["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)


def _run(goal: str, workspace: Path | None, budget: float | None, resume: str | None, as_json: bool) -> None:
    from tierwise.session import Session

    async def go() -> OrchestrationResult:
        progress = None if as_json else _Progress()
        on_event = progress.event if progress is not None else None
        async with Session(load_config(), budget_usd=budget) as s:
            try:
                return await s.orchestrate(
                    goal, workspace=workspace, budget=budget, resume_run_id=resume, on_event=on_event
                )
            finally:
                if progress is not None:
                    progress.stop()

    result = run_async(go)
    if as_json:
        print_json(result.to_dict())
    else:
        _show(result)


def register(app: typer.Typer) -> None:
    """Add ``orchestrate`` and ``resume`` to the tierwise command."""

    @app.command("orchestrate")
    def orchestrate_cmd(
        goal: Annotated[str, typer.Argument(help="what to do, in words")],
        workspace: Annotated[
            Path | None, typer.Option("--workspace", help="directory the subagents may read")
        ] = None,
        budget: Annotated[float | None, typer.Option("--budget", help="cap on this run's spend, USD")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    ) -> None:
        """Plan on the large tier, execute on mini/nano subagents, synthesize and check on large."""
        if not goal.strip():
            raise fail('the goal is empty: say what to do, e.g. tierwise orchestrate "List the TODOs"')
        check_budget(budget)
        if workspace is not None and not workspace.is_dir():
            raise fail(f"workspace {str(workspace)!r} does not exist or is not a directory")
        _run(goal, workspace, budget, None, as_json)

    @app.command("resume")
    def resume_cmd(
        run_id: Annotated[
            str, typer.Argument(help="the interrupted run (or the first characters of its id)")
        ],
        budget: Annotated[
            float | None, typer.Option("--budget", help="cap on the rest of the run, USD")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    ) -> None:
        """Continue an interrupted orchestration; finished steps are not paid for again."""
        check_budget(budget)
        _run("", None, budget, run_id, as_json)
