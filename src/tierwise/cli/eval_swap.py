"""``tierwise eval swap``: the layer-swap experiment over a ready system, from the command line.

The CLI is the layer allowed to import ``systems``: it turns each system into a ``SystemRunner`` whose
input is one JSON object (one line of an ``--inputs`` JSONL file) with that system's arguments.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
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
from tierwise.errors import InputError

if TYPE_CHECKING:  # numpy, the runtime and the ledger load only when the experiment runs
    from tierwise.evaluation.swap import SwapOutcome
    from tierwise.runtime.scope import Scope

Adapter = Callable[["Scope", dict[str, Any]], Awaitable["SwapOutcome"]]


def _outcome(output: str, quality: float | None = None) -> SwapOutcome:
    from tierwise.evaluation.swap import SwapOutcome

    return SwapOutcome(output, quality)


def _need(case: dict[str, Any], *keys: str) -> list[Any]:
    missing = [k for k in keys if k not in case]
    if missing:
        raise InputError(f"input {json.dumps(case)[:80]} lacks {', '.join(missing)}")
    return [case[k] for k in keys]


async def _support_triage(scope: Scope, case: dict[str, Any]) -> SwapOutcome:
    from tierwise.systems.support_triage import read_examples, read_kb, read_tickets, triage

    (tickets,) = _need(case, "tickets")
    report = await triage(
        scope,
        read_tickets(Path(tickets)),
        examples=read_examples(Path(case["examples"])) if case.get("examples") else None,
        kb=read_kb(Path(case["kb"])) if case.get("kb") else None,
    )
    lines = "\n".join(json.dumps(item.to_line()) for item in report.items)
    return _outcome(lines, report.accuracy)


async def _computer_use(scope: Scope, case: dict[str, Any]) -> SwapOutcome:
    from tierwise.systems.computer_use import run

    url, goal = _need(case, "url", "goal")
    result = await run(scope, url, goal, max_steps=int(case.get("max_steps", 10)))
    data = result.to_dict()
    return _outcome(json.dumps(data.get("steps", []))[:6000], 1.0 if data.get("success") else 0.0)


async def _pr_review(scope: Scope, case: dict[str, Any]) -> SwapOutcome:
    from tierwise.systems.pr_review import collect_diff, review

    repo, base = _need(case, "repo", "base")
    result = await review(scope, collect_diff(repo, base, case.get("head", "HEAD")))
    return _outcome(json.dumps(result.to_dict(), default=str)[:6000])  # judged


async def _coding_assistant(scope: Scope, case: dict[str, Any]) -> SwapOutcome:
    from tierwise.systems.coding_assistant import run

    repo, request = _need(case, "repo", "request")
    return _outcome((await run(scope, repo, request)).to_markdown()[:6000])  # judged


async def _research(scope: Scope, case: dict[str, Any]) -> SwapOutcome:
    from tierwise.systems.research import run

    sources, question = _need(case, "sources", "question")
    return _outcome((await run(scope, sources, question)).to_markdown()[:6000])  # judged


# One adapter per system: an input is one JSON object of that system's arguments. Systems that can tell
# their own quality (triage accuracy, computer-use success) report it; the others are judged.
ADAPTERS: dict[str, Adapter] = {
    "coding-assistant": _coding_assistant,
    "pr-review": _pr_review,
    "support-triage": _support_triage,
    "computer-use": _computer_use,
    "research": _research,
}


def _read_inputs(paths: list[Path]) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in paths:
        if not path.is_file():
            raise fail(f"inputs file {str(path)!r} not found: pass JSONL, one JSON object per input")
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                case = json.loads(line)
            except json.JSONDecodeError as exc:
                raise fail(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(case, dict):
                raise fail(f"{path}:{n}: each line must be a JSON object with the system's arguments")
            cases.append(case)
    if not cases:
        raise fail("--inputs holds no inputs: one JSON object per line")
    return cases


def register(eval_app: typer.Typer) -> None:
    @eval_app.command("swap")
    def swap(
        system: Annotated[str, typer.Option(help=f"one of {', '.join(ADAPTERS)}")],
        layer: Annotated[str, typer.Option(help="planning, execution or validation")],
        to: Annotated[str, typer.Option("--to", help="the tier that takes the layer over")],
        inputs: Annotated[
            list[Path], typer.Option(help="JSONL files, one object of system arguments per line")
        ],
        judge: Annotated[
            bool | None, typer.Option("--judge/--no-judge", help="force the large-tier judge")
        ] = None,
        budget: Annotated[float | None, typer.Option(help="cap for the judge's run, in USD")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Run the same inputs as configured and with LAYER moved to TIER; compare quality and cost."""
        from tierwise.core import Layer, parse_tier  # pydantic: only when the command runs

        if system not in ADAPTERS:
            raise fail(f"unknown system {system!r}: use one of {', '.join(ADAPTERS)}")
        try:
            which = Layer(layer)
        except ValueError:
            raise fail(f"unknown layer {layer!r}: use planning, execution or validation") from None
        tier = guarded(lambda: parse_tier(to))
        check_budget(budget)
        cases = _read_inputs(inputs)
        config = guarded(load_config)
        adapter = ADAPTERS[system]

        from tierwise.cli.progress import Watch

        watch = Watch()

        async def go() -> dict[str, Any]:
            from tierwise.evaluation.swap import swap_experiment
            from tierwise.session import Session

            async with Session(config) as s:
                opened = 0

                @asynccontextmanager
                async def watched(kind: str, label: str = "", **kw: Any) -> AsyncIterator[Scope]:
                    # Each arm of each input, and the judge, is a run of its own: the watch follows each.
                    nonlocal opened
                    opened += 1
                    async with s.run(kind, label, **kw) as scope:
                        arm = kind.rsplit(":", 1)[-1]  # baseline, swapped, then judge
                        where = "" if arm == "judge" else f" · input {(opened + 1) // 2} of {len(cases)}"
                        watch.attach(scope, label=arm + where)
                        yield scope

                report = await swap_experiment(
                    watched,
                    adapter,
                    cases,
                    layer=which,
                    to_tier=tier,
                    system=system,
                    judge=judge,
                    budget_usd=budget,
                )
                return report.to_dict()

        data = run_async(go, watch)
        if as_json:
            print_json(data)
            return
        table = Table("arm", "quality", "cost")
        for arm in ("baseline", "swapped"):
            q = data[arm]["quality"]
            table.add_row(arm, "-" if q is None else f"{q:.3f}", f"${data[arm]['cost_usd']:.6f}")
        console.print(table)
        lo, hi = data["quality_diff_ci95"]
        diff = data["quality_diff"]
        if diff is not None:
            console.print(
                f"quality difference {diff:+.3f} (95% CI {lo:+.3f} … {hi:+.3f}), quality from the "
                f"{data['quality_source']}; cost ratio {data['cost_ratio'] or 0:.3f}",
                highlight=False,
            )
        for err in data["errors"]:
            console.print(f"[yellow]{escape(err)}[/]")
