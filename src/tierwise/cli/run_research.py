"""``tierwise run research --sources DIR "question"``: a synthesis with checked citations."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tierwise.cli.common import (
    check_budget,
    console,
    err_console,
    fail,
    guarded,
    load_config,
    print_json,
    run_async,
)

if TYPE_CHECKING:  # the system and its dependencies load only when the command runs
    from tierwise.systems.research import ResearchResult

FORMATS = ("md", "json")


def outputs(out: Path, result: ResearchResult) -> list[Path]:
    """The format ``out`` names (.md or .json) and the other one beside it."""
    from tierwise.systems.reporting import write_outputs

    return write_outputs(
        out,
        {
            "md": result.to_markdown,
            "json": lambda: json.dumps(result.to_dict(), indent=2, default=str, ensure_ascii=False) + "\n",
        },
    )


def _show(d: dict[str, Any]) -> None:
    console.print(d["answer"] or "(no answer)", markup=False, highlight=False)
    for c in d["citations"]:
        console.print(f'[{c["marker"]}] {c["source"]}: "{c["quote"]}"', markup=False, highlight=False)


def _warn(d: dict[str, Any]) -> None:
    if d["dropped_citations"]:
        n = len(d["dropped_citations"])
        err_console.print(
            f"warning: dropped {n} citation(s) whose quote is not in the source", style="yellow"
        )
    for w in d["warnings"]:
        err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``research`` to ``tierwise run``."""

    @app.command("research")
    def research_cmd(
        question: Annotated[str, typer.Argument(help="the question to answer from the sources")],
        sources: Annotated[Path, typer.Option("--sources", help="folder of .txt, .md, .html and .pdf files")],
        out: Annotated[
            Path | None,
            typer.Option("--out", help="write the synthesis here (.md or .json; the other beside)"),
        ] = None,
        budget: Annotated[float | None, typer.Option("--budget", help="cap on this run's spend, USD")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    ) -> None:
        """Answer QUESTION from --sources: mini gathers evidence, nano classifies, large synthesizes."""
        from tierwise.cli.progress import Watch
        from tierwise.session import Session
        from tierwise.systems import research
        from tierwise.systems.reporting import check_out, print_cost_line

        check_budget(budget)
        if out is not None:
            guarded(lambda: check_out(out, FORMATS))
        if not question.strip():
            raise fail('the question is empty: ask something, e.g. "What limits battery life?"')
        corpus = guarded(lambda: research.load_corpus(sources))  # a bad --sources opens no run

        async def go() -> ResearchResult:
            label, meta = research.run_label(question), research.run_metadata(corpus)
            async with (
                Session(load_config(), budget_usd=budget) as s,
                s.run(research.SYSTEM, label, budget_usd=budget, metadata=meta) as scope,
            ):
                watch.attach(scope)
                return await research.run(scope, corpus, question)

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
        # Beside --json the cost line goes to stderr so stdout stays one JSON document.
        print_cost_line(result.spend, file=sys.stderr if as_json else None)
