"""``tierwise run pr-review --repo PATH --base REF``: mini reviews files, nano grades, large summarizes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tierwise.cli.common import check_budget, console, fail, load_config, print_json, run_async
from tierwise.errors import TierwiseError

if TYPE_CHECKING:  # the system and its dependencies load only when the command runs
    from tierwise.systems.pr_review import PRReview

EXTENSIONS = ("md", "json", "sarif")
PARTIAL_EXIT = 3  # the review was written but did not cover every changed file (see its warnings)


def _say(text: str, style: str | None = None) -> None:
    # Titles and paths come from models and repositories: print them as plain text, never as markup.
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _show(rv: PRReview, written: list[Path]) -> None:
    from tierwise.systems.pr_review.report import render_markdown
    from tierwise.systems.reporting import print_cost_line

    if not rv.files:
        _say(f"no changes between {rv.base} and {rv.head}: nothing to review")
    elif not written:
        sys.stdout.write(render_markdown(rv))
    else:
        counts = ", ".join(f"{n} {s}" for s, n in rv.counts().items() if n) or "no findings"
        _say(f"verdict: {rv.verdict} · {counts} · {len(rv.files)} file(s) · run {rv.run_id}")
        for f in rv.findings[:10]:
            _say(f"  {f.id} {f.severity:<8} {f.area:<11} {f.file}:{f.line}  {f.title}")
        if len(rv.findings) > 10:
            _say(f"  ... and {len(rv.findings) - 10} more")
    for w in rv.warnings:
        _say(f"warning: {w}", style="yellow")
    if written:
        _say("wrote " + ", ".join(str(p) for p in written))
    print_cost_line(rv.spend)


def register(run_app: typer.Typer) -> None:
    @run_app.command("pr-review")
    def pr_review(
        repo: Annotated[Path, typer.Option("--repo", help="The git repository to review.")],
        base: Annotated[str, typer.Option("--base", help="The base ref (branch, tag or commit).")],
        head: Annotated[
            str, typer.Option("--head", help="The head ref; changes since its merge base.")
        ] = "HEAD",
        out: Annotated[
            Path | None,
            typer.Option("--out", help="Report file: .md, .json or .sarif; the others go beside it."),
        ] = None,
        budget: Annotated[
            float | None, typer.Option("--budget", help="Cap on this run's spend in USD.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the review as JSON.")] = False,
    ) -> None:
        """Review a diff: mini checks each changed file, nano grades and dedupes, large summarizes.

        An empty diff is not an error: it prints a message, writes an empty report and exits 0.
        """
        from tierwise.cli.progress import Watch
        from tierwise.session import Session
        from tierwise.systems.pr_review import (
            SYSTEM,
            Options,
            check_repo,
            collect_diff,
            review,
            run_label,
            run_metadata,
        )
        from tierwise.systems.pr_review.report import formats
        from tierwise.systems.reporting import check_out, write_outputs

        check_budget(budget)
        try:
            if out is not None:
                check_out(out, EXTENSIONS)
            check_repo(repo)  # before loading any model: a wrong path should cost nothing
        except TierwiseError as exc:
            raise fail(str(exc)) from None

        async def go() -> PRReview:
            config = load_config()
            opts = Options()
            # Bad refs fail here, before a run is opened; the run records the commits they resolved to.
            diff = collect_diff(repo, base, head, max_files=opts.max_files)
            meta = run_metadata(diff)
            async with (
                Session(config, budget_usd=budget) as s,
                s.run(SYSTEM, run_label(diff), budget_usd=budget, metadata=meta) as scope,
            ):
                watch.attach(scope)
                rv = await review(scope, diff, options=opts)
                partial.extend(scope.shortfalls)
                return rv

        partial: list[str] = []  # why the run could not cover its input: it ends partial, the exit is 3

        watch = Watch()
        rv = run_async(go, watch)
        written: list[Path] = []
        if out is not None:
            try:
                written = write_outputs(out, formats(rv))
            except TierwiseError as exc:
                raise fail(str(exc)) from None
        if as_json:
            print_json({**rv.to_dict(), "outputs": [str(p) for p in written]})
        else:
            _show(rv, written)
        if partial:
            raise typer.Exit(PARTIAL_EXIT)
