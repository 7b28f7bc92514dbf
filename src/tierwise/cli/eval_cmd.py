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
    from tierwise.evaluation.replay import ReplayResult
    from tierwise.routing.outcomes import Outcomes

eval_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Measure routing quality: replay routers on recorded outcomes, train the learned router.",
)

# Held-out MMLU subjects: APGR 0.66 with static+lex2, 0.63 with static+lex, 0.58 with e5+static (~100x slower)
# (bench/routing_quality.py); embeddings are cached per text under ~/.cache/tierwise.
DEFAULT_EMBEDDER = "static+lex2"

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
    router: Annotated[
        str, typer.Option(help="learned | cascade | cascade+ | knn-tfidf | random")
    ] = "learned",
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    report: Annotated[
        Path | None, typer.Option(help="write index.html + frontier.png into this directory")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the held-out split and the router's folds")] = 0,
    embedder: Annotated[
        str,
        typer.Option(
            help="learned router features: static+lex2 (best, fast) | static+lex | static | e5+static (slow)"
        ),
    ] = DEFAULT_EMBEDDER,
    from_ledger: Annotated[
        bool,
        typer.Option(
            "--from-ledger", help="the learned router vs the policy on the shadow checks in the ledger"
        ),
    ] = False,
    router_file: Annotated[
        Path | None,
        typer.Option(help="with --from-ledger: replay this trained router (default: cross-validate)"),
    ] = None,
    score: Annotated[
        str, typer.Option(help="with --from-ledger: auto (judge where recorded) | judge | agreement")
    ] = "auto",
) -> None:
    """Replay a router on recorded outcomes: --outcomes PATH... [--train PATH...], or --from-ledger.

    Without --train, a held-out split of --outcomes is used (whole subjects for MMLU). The router's cost
    parameter is swept into a cost–quality frontier, compared with the single models and the oracle.
    With --from-ledger, the learned router is compared with the policy on the ledger's shadow records.
    """
    if not from_ledger and router_file is not None:
        raise fail("--router-file replays a trained router on the ledger: add --from-ledger")
    if score not in ("auto", "judge", "agreement"):
        raise fail(f"--score must be auto, judge or agreement, got {score!r}")
    paths = _paths(ctx, "--outcomes", "--train", required=() if from_ledger else ("--outcomes",))
    if from_ledger and (paths["--outcomes"] or paths["--train"] or router != "learned"):
        raise fail(
            "--from-ledger replays the learned router on the ledger: drop --outcomes, --train, --router"
        )
    with _progress(not as_json):
        if from_ledger:
            result = guarded(lambda: _ledger_replay(router_file, score, seed, embedder))
        else:
            from tierwise.evaluation.replay import run_replay

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
    ledger = result.extra.get("ledger")
    if ledger:
        for who in ("policy", "learned"):
            d = ledger[who]
            shares = ", ".join(f"{escape(m)} {v:.0%}" for m, v in d["share"].items())
            console.print(f"{who}: quality {d['quality']:.4f}, cost {d['cost']:.6g} ({shares})")
        console.print(
            "learned picks of a model the row did not run (estimated): "
            f"{ledger['learned']['estimated_share']:.1%}"
        )
    calib = result.extra.get("reliability")
    if calib:
        console.print(f"calibration: ECE {calib['ece']:.3f} over {calib['n']} scored predictions")
    if result.skipped:
        console.print(f"skipped {result.skipped} rows with blank scores")
    if page is not None:
        console.print(f"report: {page}")


@eval_app.command(**_PATHS)  # type: ignore[arg-type]
def train(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="where to write the trained router (.npz)")] = None,
    router: Annotated[
        str,
        typer.Option(
            help="learned | cascade+ (cascade routing: needs every model's recorded response on every row)"
        ),
    ] = "learned",
    from_ledger: Annotated[
        bool,
        typer.Option("--from-ledger", help="train on the shadow checks recorded in the configured ledger"),
    ] = False,
    run_id: Annotated[str | None, typer.Option("--run", help="with --from-ledger: only this run")] = None,
    models: Annotated[
        str | None,
        typer.Option(help="with --from-ledger: the models to train on (catalog ids, comma-separated)"),
    ] = None,
    score: Annotated[
        str, typer.Option(help="with --from-ledger: auto (judge where recorded) | judge | agreement")
    ] = "auto",
    embedder: Annotated[
        str, typer.Option(help="features: static+lex2 (best, fast) | static+lex | static | e5+static (slow)")
    ] = DEFAULT_EMBEDDER,
    target_cost: Annotated[
        float | None,
        typer.Option(help="calibrate λ (cascade+: choose the plan) to this mean cost per call"),
    ] = None,
    target_large_share: Annotated[
        float | None, typer.Option(help="calibrate λ to this share of calls to the costliest model (0–1)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the cross-validation folds")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print a summary as JSON")] = False,
) -> None:
    """Fit a router on --outcomes PATH... and/or --from-ledger, and save it to --out FILE.

    --router learned (default) or cascade+ (cascade routing; deploy it with [routing] router = "cascade+").
    """
    if router not in ("learned", "cascade+"):
        raise fail(f"--router must be learned or cascade+, got {router!r}")
    if out is None:
        raise fail("--out is required: the file to write the trained router to, e.g. --out router.npz")
    if router == "cascade+" and from_ledger:
        raise fail(
            "--router cascade+ cannot train --from-ledger: shadow rows score two models each and keep no "
            "responses in outcome form; cascade+ needs every model's recorded response on every row "
            "(outcome CSVs with <model>|model_response columns)"
        )
    if router == "cascade+" and target_large_share is not None:
        raise fail("--target-large-share calibrates the learned router; for cascade+ use --target-cost")
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
    if router == "cascade+":
        _train_cascade_routing(data, out, embedder, seed, target_cost, as_json)
        return
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
        "threshold": model.threshold,
        "embedder": model.embedder,
        **summary,
    }
    if as_json:
        print_json(summary)
        return
    console.print(f"trained on {model.n_train} prompts, {len(model.models)} models; predictor {model.label}")
    if "ledger" in summary:
        console.print(f"from the ledger: {summary['ledger']}")
    rule = f"τ = {model.threshold:.2f}" if model.threshold is not None else f"λ = {summary['lambda']}"
    console.print(f"{rule}; saved to {path}")


def _train_cascade_routing(
    data: Outcomes, out: Path, embedder: str, seed: int, target_cost: float | None, as_json: bool
) -> None:
    from tierwise.routing.cascade_model import CascadeRoutingModel

    with _progress(not as_json):
        model = guarded(
            lambda: CascadeRoutingModel.fit(data, embedder=embedder, seed=seed, target_cost=target_cost)
        )
    path = guarded(lambda: model.save(out))
    plan = model.plan
    summary = {
        "out": str(path),
        "router": "cascade+",
        "models": list(model.models),
        "n_train": model.n_train,
        "skipped_blank_rows": data.skipped,
        "plan": model.label,
        "cheap": [model.models[j] for j in plan.cheap],
        "alone_at": plan.alone_at if plan.alone_at < float("inf") else None,
        "escalate": None if plan.escalate is None else model.models[plan.escalate],
        "features": plan.features or None,
        "score": plan.score or None,
        "threshold": plan.threshold if abs(plan.threshold) < float("inf") else None,
        "expected_cost": plan.expected_cost,
        "expected_quality": plan.expected_quality,
        "best_single_quality": model.best_quality,
        "predictor": model.learned.label,
        "embedder": model.learned.embedder,
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"trained cascade+ on {model.n_train} prompts, {len(model.models)} models; q̂ from "
        f"{escape(model.learned.label)}"
    )
    console.print(f"plan: {escape(model.label)}")
    console.print(
        f"expected per call (cross-validated on the training rows): quality {plan.expected_quality:.4f} "
        f"(best single model {model.best_quality:.4f}), cost {plan.expected_cost:.6g}; saved to {path}"
    )


def _ledger_replay(router_file: Path | None, score: str, seed: int, embedder: str) -> ReplayResult:
    from tierwise.evaluation.ledger_replay import ledger_replay
    from tierwise.routing.learned import LearnedModel

    model = LearnedModel.load(router_file) if router_file is not None else None
    data = _ledger_outcomes(None, list(model.models) if model else None, score).outcomes
    return ledger_replay(data, model=model, embedder=model.embedder if model else embedder, seed=seed)


def _ledger_outcomes(run_id: str | None, models: list[str] | None, score: str) -> LedgerOutcomes:
    from tierwise.evaluation.ledger_outcomes import outcomes_from_calls
    from tierwise.ledger import Ledger

    config = load_config()
    with Ledger(config.ledger.url) as ledger:
        rid = ledger.get_run(run_id).id if run_id else None
        calls = ledger.calls(run_id=rid, operation="shadow")
    return outcomes_from_calls(calls, models=models, score=score)  # type: ignore[arg-type]
