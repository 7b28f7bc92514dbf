"""``tierwise eval replay`` and ``tierwise eval train``: offline routing quality on recorded outcomes.

``--outcomes`` and ``--train`` take one or more paths each (``--outcomes a.csv b.csv``, or the flag
repeated); a directory stands for the CSV files in it. Heavy imports (numpy, scikit-learn, matplotlib)
happen inside the commands so that ``tierwise --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tierwise.cli.common import console, fail, guarded, load_config, print_json

if TYPE_CHECKING:
    from tierwise.evaluation.ledger_outcomes import LedgerOutcomes

eval_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Measure routing quality: replay routers on recorded outcomes, train the learned router.",
)

# Held-out MMLU subjects: APGR 0.63 with static+lex vs 0.58 with e5+static, which embeds ~100x slower
# (bench/routing_quality.py); embeddings are cached per text under ~/.cache/tierwise.
DEFAULT_EMBEDDER = "static+lex"

# Multi-path options are parsed from the raw arguments so that `--outcomes a b c` works as documented.
_PATHS = {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True}}


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgError(message)


def _paths(ctx: typer.Context, *flags: str, required: tuple[str, ...] = ()) -> dict[str, list[Path]]:
    parser = _Parser(prog="tierwise eval", add_help=False)
    for flag in flags:
        parser.add_argument(flag, nargs="+", action="extend", type=Path, default=None)
    try:
        ns, unknown = parser.parse_known_args(ctx.args)
    except _ArgError as exc:
        raise fail(f"{exc}: pass one or more paths, e.g. --outcomes data/arc.csv") from None
    if unknown:
        raise fail(f"unexpected argument(s) {' '.join(unknown)}: see `tierwise eval {ctx.info_name} --help`")
    out = {flag: getattr(ns, flag.lstrip("-").replace("-", "_")) or [] for flag in flags}
    for flag in required:
        if not out[flag]:
            raise fail(f"{flag} is required: pass one or more outcome CSV files or directories")
    return out


@contextmanager
def _progress(enabled: bool = True) -> Iterator[None]:
    """A progress bar with ETA for embedding (the one long step; cached texts are not re-embedded)."""
    if not enabled:
        yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tierwise.routing.features import reporting

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def report(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"embedding ({name})", total=total)
            bar.update(tasks[name], completed=done, total=total)

        with reporting(report):
            yield


@eval_app.command(**_PATHS)  # type: ignore[arg-type]
def replay(
    ctx: typer.Context,
    router: Annotated[str, typer.Option(help="learned | cascade | knn-tfidf | random")] = "learned",
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    report: Annotated[
        Path | None, typer.Option(help="write index.html + frontier.png into this directory")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the held-out split and the router's folds")] = 0,
    embedder: Annotated[
        str,
        typer.Option(help="learned router features: static+lex (best, fast) | static | e5+static (slow)"),
    ] = DEFAULT_EMBEDDER,
) -> None:
    """Replay a router on recorded outcomes: --outcomes PATH... [--train PATH...].

    Without --train, a held-out split of --outcomes is used (whole subjects for MMLU). The router's cost
    parameter is swept into a cost–quality frontier, compared with the single models and the oracle.
    """
    from tierwise.evaluation.replay import run_replay

    paths = _paths(ctx, "--outcomes", "--train", required=("--outcomes",))
    with _progress(not as_json):
        result = guarded(
            lambda: run_replay(
                paths["--outcomes"],
                train=paths["--train"] or None,
                router=router,
                seed=seed,
                embedder=embedder,
            )
        )
    page = None
    if report is not None:
        from tierwise.evaluation.report import write_report

        page = guarded(lambda: write_report(result, report))
    if as_json:
        data = result.to_json()
        if page is not None:
            data["report"] = str(page)
        print_json(data)
        return
    table = Table(
        "", "quality", "cost", title=f"replay: {result.router} on {result.n} prompts ({result.split})"
    )
    for p in sorted(result.singles, key=lambda p: p.cost):
        table.add_row(escape(p.label), f"{p.quality:.4f}", f"{p.cost:.6g}")  # model names from a CSV
    table.add_row("[bold]oracle[/]", f"{result.oracle.quality:.4f}", f"{result.oracle.cost:.6g}")
    if result.budget_point is not None:
        table.add_row(
            f"[bold]{result.router} at ≤25% of best's cost[/]",
            f"{result.budget_point.quality:.4f} ({result.budget_pct_of_best:.1f}%)",
            f"{result.budget_point.cost:.6g}",
        )
    console.print(table)
    console.print(
        f"AIQ {result.router} [bold]{result.aiq:.4f}[/] vs single-model hull {result.single_hull_aiq:.4f}"
    )
    if result.apgr is not None:
        cpt50 = "n/a" if result.cpt50 is None else f"{result.cpt50:.1f}%"
        cpt80 = "n/a" if result.cpt80 is None else f"{result.cpt80:.1f}%"
        console.print(f"APGR {result.apgr:.4f}   CPT(50%) {cpt50}   CPT(80%) {cpt80}")
    if result.skipped:
        console.print(f"skipped {result.skipped} rows with blank scores")
    if page is not None:
        console.print(f"report: {page}")


@eval_app.command(**_PATHS)  # type: ignore[arg-type]
def train(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="where to write the learned router (.npz)")] = None,
    from_ledger: Annotated[
        bool,
        typer.Option("--from-ledger", help="train on the shadow checks recorded in the configured ledger"),
    ] = False,
    run_id: Annotated[str | None, typer.Option("--run", help="with --from-ledger: only this run")] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="with --from-ledger: the model pair to train on (two catalog ids, comma-separated)"
        ),
    ] = None,
    score: Annotated[
        str, typer.Option(help="with --from-ledger: auto (judge where recorded) | judge | agreement")
    ] = "auto",
    embedder: Annotated[
        str, typer.Option(help="features: static+lex (best, fast) | static | e5+static (slow)")
    ] = DEFAULT_EMBEDDER,
    target_cost: Annotated[float | None, typer.Option(help="calibrate λ to this mean cost per call")] = None,
    target_large_share: Annotated[
        float | None, typer.Option(help="calibrate λ to this share of calls to the costliest model (0–1)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the cross-validation folds")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print a summary as JSON")] = False,
) -> None:
    """Fit the learned router on --outcomes PATH... and/or --from-ledger, and save it to --out FILE."""
    if out is None:
        raise fail("--out is required: the file to write the learned router to, e.g. --out router.npz")
    if target_cost is not None and target_large_share is not None:
        raise fail("pass at most one of --target-cost and --target-large-share")
    if target_large_share is not None and not 0 <= target_large_share <= 1:
        raise fail(f"--target-large-share must be between 0 and 1, got {target_large_share}")
    if score not in ("auto", "judge", "agreement"):
        raise fail(f"--score must be auto, judge or agreement, got {score!r}")
    if not from_ledger and (run_id or models):
        raise fail("--run and --models select ledger outcomes: add --from-ledger")
    paths = _paths(ctx, "--outcomes")
    if not paths["--outcomes"] and not from_ledger:
        raise fail("pass --outcomes PATH... (outcome CSV files or directories) or --from-ledger")

    from tierwise.evaluation.datasets import load_outcomes
    from tierwise.routing.learned import LearnedModel
    from tierwise.routing.outcomes import concat

    parts = []
    summary: dict[str, object] = {}
    if paths["--outcomes"]:
        parts.append(guarded(lambda: load_outcomes(paths["--outcomes"])))
    if from_ledger:
        pair = [m.strip() for m in models.split(",") if m.strip()] if models else None
        recorded = guarded(lambda: _ledger_outcomes(run_id, pair, score))
        parts.append(recorded.outcomes)
        summary["ledger"] = {
            "rows": recorded.outcomes.n,
            "score_source": recorded.score_source,
            "skipped": recorded.skipped,
        }
    data = guarded(lambda: concat(parts))
    with _progress(not as_json):
        model = guarded(lambda: LearnedModel.fit(data, embedder=embedder, seed=seed))
    if target_cost is not None:
        guarded(lambda: model.calibrate(target_cost=target_cost))
    elif target_large_share is not None:
        guarded(lambda: model.calibrate(target_large_share=target_large_share))
    path = guarded(lambda: model.save(out))
    summary = {
        "out": str(path),
        "models": list(model.models),
        "n_train": model.n_train,
        "skipped_blank_rows": data.skipped,
        "predictor": model.label,
        "cv_aiq": model.selection,
        "lambda": None if model.lam == float("inf") else model.lam,
        "embedder": model.embedder,
        **summary,
    }
    if as_json:
        print_json(summary)
        return
    console.print(f"trained on {model.n_train} prompts, {len(model.models)} models; predictor {model.label}")
    if "ledger" in summary:
        console.print(f"from the ledger: {summary['ledger']}")
    console.print(f"λ = {summary['lambda']}; saved to {path}")


def _ledger_outcomes(run_id: str | None, models: list[str] | None, score: str) -> LedgerOutcomes:
    from tierwise.evaluation.ledger_outcomes import outcomes_from_calls
    from tierwise.ledger import Ledger

    config = load_config()
    with Ledger(config.ledger.url) as ledger:
        rid = ledger.get_run(run_id).id if run_id else None
        calls = ledger.calls(run_id=rid, operation="shadow")
    return outcomes_from_calls(calls, models=models, score=score)  # type: ignore[arg-type]
