"""``tierwise run computer-use --url URL "goal"``: the computer-use agent in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tierwise.cli.common import (
    check_budget,
    console,
    fail,
    guarded,
    load_config,
    print_json,
    run_async,
)

NOT_REACHED_EXIT = 1  # no evidence of the goal on the final page
PARTIAL_EXIT = 3  # the budget stopped the run before it finished

if TYPE_CHECKING:  # the system and its dependencies load only when the command runs
    from tierwise.systems.computer_use import ComputerUseResult, StepResult


def _markdown(d: dict[str, Any]) -> str:
    lines = [
        f"# Computer use: {d['goal']}",
        "",
        f"- start: {d['start_url']}",
        f"- final: {d['final_url']}",
        f"- success: {d['success']} ({d['verdict']})",
        f"- stopped: {d['stopped']}",
        f"- total cost: ${d['total_cost_usd'] or 0:.6f}; all-large counterfactual: "
        f"${d['all_large_counterfactual_usd'] or 0:.6f}",
        "",
        "| # | action | target | value | outcome | url |",
        "|---|---|---|---|---|---|",
    ]
    for s in d["steps"]:
        cells = [str(s["n"]), s["action"], s["target"], s["value"], s["outcome"], s["url"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _write(out: Path, d: dict[str, Any]) -> None:
    """The format --out names, and the other one beside it (same stem)."""
    from tierwise.systems.reporting import write_outputs

    write_outputs(
        out, {"json": lambda: json.dumps(d, indent=2, default=str) + "\n", "md": lambda: _markdown(d)}
    )


def _show(d: dict[str, Any]) -> None:
    from tierwise.systems.reporting import cost_line

    t = Table(title=f"run {d['run_id']}")
    for col in ("#", "action", "target", "value", "observed", "outcome", "url"):
        t.add_column(col)
    for s in d["steps"]:
        cells = (s["action"], s["target"], s["value"][:40], s["observed"], s["outcome"], s["url"])
        t.add_row(str(s["n"]), *map(escape, cells))  # what the model and the page said: text, not markup
    console.print(t)
    verdict = "[green]success[/]" if d["success"] else "[red]not reached[/]"
    console.print(f"{verdict} — {escape(d['verdict'])}", highlight=False)
    console.print(
        f"final URL {escape(d['final_url'])} (stopped: {escape(str(d['stopped']))})", highlight=False
    )
    if d["blocked_requests"]:
        console.print(f"[yellow]blocked[/] {len(d['blocked_requests'])} request(s) outside the allowlist")
    console.print(cost_line(d), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``computer-use`` to ``tierwise run``."""

    @app.command("computer-use")
    def computer_use_cmd(
        goal: Annotated[str, typer.Argument(help="what to achieve on the site, in words")],
        url: Annotated[str, typer.Option("--url", help="the page to start from")],
        # A string, parsed here, so that a bad value is one line rather than typer's usage box.
        max_steps: Annotated[str, typer.Option("--max-steps", help="most actions to take")] = "10",
        allow_host: Annotated[
            list[str] | None, typer.Option("--allow-host", help="another host the browser may visit")
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", help="write the result here (.json or .md); screenshots beside"),
        ] = None,
        expect: Annotated[
            list[str] | None,
            typer.Option("--expect", help="text the final page must show for success (repeatable)"),
        ] = None,
        budget: Annotated[float | None, typer.Option("--budget", help="cap on this run's spend, USD")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    ) -> None:
        """Drive headless Chromium toward GOAL: large plans, mini acts, nano classifies outcomes."""
        from tierwise.cli.progress import Watch
        from tierwise.session import Session
        from tierwise.systems import computer_use
        from tierwise.systems.computer_use import MAX_STEPS_LIMIT
        from tierwise.systems.reporting import check_out

        try:
            steps = int(max_steps)
        except ValueError:
            raise fail(
                f"--max-steps must be a whole number between 1 and {MAX_STEPS_LIMIT}, got {max_steps!r}"
            ) from None
        check_budget(budget)
        if out is not None:
            guarded(lambda: check_out(out, ("json", "md")))  # a typo in --out costs nothing
        hosts = tuple(allow_host or ())
        # Bad input fails here, before a run is opened and recorded.
        allowlist = guarded(lambda: computer_use.check_inputs(url, goal, steps, hosts, out))

        def progress(step: StepResult) -> None:
            if not as_json:  # above the live view, when there is one
                watch.say(f"step {step.n}: {step.action} {step.target} {step.value[:40]} -> {step.outcome}")

        async def go() -> ComputerUseResult:
            label, meta = computer_use.run_label(goal), computer_use.run_metadata(url, steps, allowlist)
            async with (
                Session(load_config(), budget_usd=budget) as s,
                s.run(computer_use.SYSTEM, label, budget_usd=budget, metadata=meta) as scope,
            ):
                watch.attach(scope)
                result = await computer_use.run(
                    scope, url, goal, max_steps=steps, allow_hosts=hosts, out=out, on_step=progress,
                    expect=tuple(expect or ()),
                )  # fmt: skip
                partial.extend(scope.shortfalls)
                return result

        partial: list[str] = []  # the run could not finish its input (the budget stopped it)

        watch = Watch()
        d = run_async(go, watch).to_dict()
        if out is not None:
            guarded(lambda: _write(out, d))
        if as_json:
            print_json(d)
        else:
            _show(d)
        # Not reached is not an error (the result is written) but scripts must not read it as success.
        if partial or not d["success"]:
            raise typer.Exit(PARTIAL_EXIT if partial else NOT_REACHED_EXIT)
