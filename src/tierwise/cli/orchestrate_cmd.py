"""``tierwise orchestrate GOAL`` and ``tierwise resume RUN_ID``, with a live progress display."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tierwise.cli.common import check_budget, console, fail, load_config, print_json, run_async

if TYPE_CHECKING:  # the runtime and its SDKs load only when the command runs
    from tierwise.cli.progress import Watch
    from tierwise.orchestration import OrchestrationResult
    from tierwise.runtime.progress import Progress
    from tierwise.runtime.scope import Scope

_ICONS = {"waiting": "·", "running": "[yellow]…[/]", "done": "[green]✓[/]", "failed": "[red]✗[/]"}


class _Steps:
    """The plan's steps and their status, from the executor's events; shown above the watch's line.

    The events also name the stages (plan, execute N steps, synthesize) on the run's progress, so the
    line and the piped output say where the run is."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.rows: dict[str, list[str]] = {}
        self.progress: Progress | None = None
        watch.extra = self.table

    def table(self) -> Table | None:
        if not self.rows:
            return None
        t = Table(box=None, show_header=True, header_style="bold")
        for col in ("", "step", "tier", "cost"):
            t.add_column(col)
        for step, (status, tier, cost) in list(self.rows.items()):
            t.add_row(_ICONS.get(status, escape(status)), escape(step), escape(tier), escape(cost))
        return t

    def event(self, event: str, step: str, info: Mapping[str, Any]) -> None:
        p = self.progress
        if event == "planned":
            steps = list(info.get("steps", []))
            for sid in steps:
                self.rows.setdefault(sid, ["waiting", "", ""])
            if p is not None:
                p.stage("execute", total=len(steps))
        elif event in ("planning", "synthesis", "start"):
            self.rows[step] = ["running", str(info.get("tier", "")), ""]
            if p is not None and event != "start":
                p.stage("plan" if event == "planning" else "synthesize")
        elif event == "done":
            cost = info.get("cost")
            self.rows[step] = ["done", str(info.get("tier", "")), f"${cost:.6f}" if cost is not None else "?"]
            if p is not None and p.state.stage == "execute":
                p.advance(note=step)
        elif event == "failed":
            self.rows[step] = ["failed", "", str(info.get("error", ""))[:60]]
            if p is not None and p.state.stage == "execute":
                p.advance(note=f"{step} failed")


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
    from tierwise.cli.progress import Watch
    from tierwise.session import Session

    watch = Watch(resumable=True)
    steps = _Steps(watch)

    def attach(scope: Scope) -> None:
        # The watch follows the run's progress and knows the id an interrupted orchestration resumes by.
        watch.attach(scope)
        steps.progress = scope.progress

    async def go() -> OrchestrationResult:
        async with Session(load_config(), budget_usd=budget) as s:
            return await s.orchestrate(
                goal, workspace=workspace, budget=budget, resume_run_id=resume,
                on_scope=attach, on_event=steps.event,
            )  # fmt: skip

    result = run_async(go, watch)
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
