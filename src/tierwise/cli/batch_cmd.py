"""``tierwise batch INPUT --task ... --out OUT``: classify, extract, rank or ask over a large file, streamed
and resumable (the same command again skips what is done), locally or on Ray.

Only typer and the CLI plumbing are imported at the top: the scale engine, pyarrow, Ray and the support
triage classifier load when the command runs, so the CLI still starts fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tierwise.cli.common import check_budget, console, err_console, fail, guarded, load_config, run_async

if TYPE_CHECKING:
    from tierwise.runtime.scope import Scope


class BatchProgress:
    """A rich progress bar on stderr: items done of total, rate, spend against the budget, ETA."""

    def __init__(self, budget: float | None, *, enabled: bool) -> None:
        self.budget, self.enabled = budget, enabled
        self.scope: Scope | None = None
        self.bar: Any = None
        self.task: Any = None
        self.bad = 0

    def start(self, scope: Scope, total: int | None) -> None:
        self.scope = scope
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]batch[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[spend]}"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        self.task = self.bar.add_task("batch", total=total, rate="", spend="")
        self.started = time.monotonic()
        self.bar.start()

    def rows(self, n: int) -> None:
        if self.bar is None or self.scope is None:
            return
        from tierwise.cli.progress import money

        done = self.bar.tasks[0].completed + n
        rate = done / max(time.monotonic() - self.started, 1e-6)
        spent = self.scope.budget.spent_usd
        spend = money(spent) + (f" of {money(self.budget)}" if self.budget else "")
        self.bar.update(self.task, advance=n, rate=f"{rate:,.0f}/s", spend=spend)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _labels(labels: str | None, labels_file: Path | None) -> tuple[str, ...]:
    from tierwise.scale import parse_labels

    if labels is not None and labels_file is not None:
        raise fail("pass either --labels or --labels-file, not both")
    if labels_file is not None:
        if not labels_file.is_file():
            raise fail(f"labels file {str(labels_file)!r} not found: check the path")
        return guarded(lambda: parse_labels(lines=labels_file.read_text("utf-8")))
    return guarded(lambda: parse_labels(labels)) if labels is not None else ()


def _schema(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from tierwise.runtime.validation import load_schema

    return guarded(lambda: load_schema(path))


def register(app: typer.Typer) -> None:
    @app.command()
    def batch(
        input: Annotated[Path, typer.Argument(help="items: .jsonl, .csv or .parquet, one per row")],
        task: Annotated[str, typer.Option(help="classify, extract, rank or ask")],
        out: Annotated[Path, typer.Option(help="results: .jsonl (or .parquet), appended as items finish")],
        labels: Annotated[str | None, typer.Option(help="classify: labels a,b,c (zero-shot alone)")] = None,
        labels_file: Annotated[Path | None, typer.Option(help="classify: labels, one per line")] = None,
        examples: Annotated[
            Path | None, typer.Option(help="classify: labelled text,category CSV (fits the nano classifier)")
        ] = None,
        schema: Annotated[Path | None, typer.Option(help="extract: JSON Schema file of the fields")] = None,
        prompt: Annotated[
            str | None,
            typer.Option(help="template over row fields, e.g. 'Summarize: {text}'; rank: the query"),
        ] = None,
        field: Annotated[str, typer.Option(help="the input field holding each item's text")] = "text",
        tier: Annotated[
            str | None, typer.Option(help="pin a tier for every item: large, mini or nano")
        ] = None,
        kind: Annotated[
            str | None,
            typer.Option(help="ask: the kind of every item's work, e.g. synthesis (default: per item)"),
        ] = None,
        executor: Annotated[
            str, typer.Option(help="local, or ray (a local Ray without --ray-address)")
        ] = "local",
        ray_address: Annotated[str | None, typer.Option(help="Ray cluster address HOST:PORT")] = None,
        budget: Annotated[float | None, typer.Option(help="cap for the whole batch, in USD")] = None,
        concurrency: Annotated[int, typer.Option(help="calls in flight at once")] = 50,
        workers: Annotated[
            int,
            typer.Option(help="local: processes making the calls, this one included (one per core pays)"),
        ] = 1,
        ordered: Annotated[bool, typer.Option("--ordered", help="write rows in input order")] = False,
        strict: Annotated[bool, typer.Option("--strict", help="stop at the first bad input row")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    ) -> None:
        """Run TASK over every item of INPUT into OUT. Run the same command again to resume: items already
        done are skipped and not paid for twice."""
        from tierwise.scale import BatchOptions, TaskSpec
        from tierwise.scale.inputs import check_input
        from tierwise.scale.outputs import check_output

        budget = check_budget(budget)
        if concurrency < 1:
            raise fail(f"--concurrency must be at least 1, got {concurrency}")
        if workers < 1:
            raise fail(f"--workers must be at least 1, got {workers}")
        if workers > 1 and executor != "local":
            raise fail("--workers is for the local executor; Ray places its own workers: drop one")
        if executor not in ("local", "ray"):
            raise fail(f"--executor {executor!r}: use local or ray")
        if ray_address and executor != "ray":
            raise fail("--ray-address needs --executor ray")
        guarded(lambda: check_input(input))
        guarded(lambda: check_output(out))
        label_set = _labels(labels, labels_file)
        if examples is not None and not examples.is_file():
            raise fail(f"examples file {str(examples)!r} not found: check the path")
        if task == "classify" and examples is None and not label_set:
            raise fail("classify needs labels: pass --labels a,b,c, --labels-file F or --examples F")
        json_schema = _schema(schema)
        config = guarded(load_config)
        if executor == "ray":
            from tierwise.scale.ray_exec import check_ledger

            guarded(lambda: check_ledger(config.ledger.url))
        progress = BatchProgress(budget, enabled=not as_json and sys.stderr.isatty())

        async def go() -> Any:
            from tierwise.scale import run_file
            from tierwise.session import Session

            async with Session(config) as s:
                classifier = None
                key_extra: dict[str, Any] = {}
                if examples is not None:
                    from tierwise.systems.support_triage.inputs import read_examples

                    texts, cats = read_examples(examples)
                    if label_set:  # --labels with --examples: only those intents
                        keep = set(label_set)
                        pairs = [(t, c) for t, c in zip(texts, cats, strict=True) if c in keep]
                        texts, cats = [t for t, _ in pairs], [c for _, c in pairs]
                    classifier = await s.classifier((texts, cats))
                    key_extra["examples"] = str(examples.resolve())
                spec = TaskSpec(
                    task=task,  # type: ignore[arg-type]
                    labels=label_set,
                    schema=json_schema,
                    prompt=prompt,
                    tier=tier,
                    kind=kind,
                    zero_shot=s.zero_shot(),  # type: ignore[arg-type]
                    classifier=classifier,
                )
                opts = BatchOptions(
                    spec, field=field, concurrency=concurrency, ordered=ordered, strict=strict,
                    budget_usd=budget, executor=executor, ray_address=ray_address,  # type: ignore[arg-type]
                    workers=workers,
                )  # fmt: skip
                try:
                    return await run_file(
                        s,
                        input,
                        out,
                        opts,
                        key_extra=key_extra,
                        on_start=progress.start,
                        on_rows=progress.rows,
                    )
                finally:
                    progress.stop()

        report = run_async(go)
        data = {
            "run_id": report.run_id,
            "out": report.out,
            "done": report.done,
            "failed": report.failed,
            "skipped_done_before": report.skipped,
            "recovered_from_ledger": report.recovered,
            "bad_rows": report.bad_rows,
            "stopped": report.stopped,
            **({"by_workers": report.by_workers} if workers > 1 else {}),
        }
        if as_json:
            sys.stdout.write(json.dumps(data) + "\n")
        else:
            for line in report.bad_examples[:5]:
                err_console.print(f"skipped bad row: {line}", markup=False, highlight=False)
            if report.bad_rows > 5:
                err_console.print(f"... {report.bad_rows - 5} more bad rows", highlight=False)
            console.print(
                f"{report.done} items written to {out} ({report.failed} failed, "
                f"{report.skipped} done before, "
                f"{report.bad_rows} bad rows skipped) · run {report.run_id[:12]}",
                markup=False,
                highlight=False,
            )
            if report.stopped:
                console.print(f"stopped early: {report.stopped}", markup=False, highlight=False)
        if report.stopped:
            raise typer.Exit(1)
