"""``tierwise run support-triage --input FILE --out OUT.jsonl``: triage tickets across the three tiers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tierwise.cli.common import check_budget, console, fail, load_config, print_json, run_async

if TYPE_CHECKING:  # the system and its dependencies (scikit-learn, scipy) load only when the command runs
    from tierwise.systems.support_triage import TriageReport


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def _show(report: TriageReport, out: Path) -> None:
    t = Table(title=f"support triage · run {report.run_id}")
    for col in ("tier path", "tickets"):
        t.add_column(col)
    for path, n in sorted(report.summary()["by_tier_path"].items()):
        t.add_row(path, str(n))
    console.print(t)
    by_action = ", ".join(f"{k} {v}" for k, v in sorted(report.by_action.items()))
    console.print(
        f"{len(report.items)} tickets: {by_action}; nano stages: static {report.nano['static']}, "
        f"e5 {report.nano['e5']}",
        highlight=False,
    )
    if report.accuracy is not None:
        console.print(f"accuracy: {report.accuracy:.4f}", highlight=False)
    console.print(
        f"total cost: {_money(report.cost_usd)}; all-large counterfactual: {_money(report.all_large_usd)}",
        highlight=False,
    )
    console.print(f"wrote {out}", highlight=False)


def register(run_app: typer.Typer) -> None:
    @run_app.command("support-triage")
    def support_triage(
        input: Annotated[Path, typer.Option("--input", help="Tickets: CSV with a text column, or JSONL.")],
        out: Annotated[Path, typer.Option("--out", help="Where to write one JSON line per ticket.")],
        labels: Annotated[
            Path | None, typer.Option("--labels", help="Intents: JSON list or one per line.")
        ] = None,
        examples: Annotated[
            Path | None, typer.Option("--examples", help="Labelled examples: CSV with text,category.")
        ] = None,
        kb: Annotated[
            Path | None, typer.Option("--kb", help="Knowledge-base folder of .md/.txt files.")
        ] = None,
        budget: Annotated[
            float | None, typer.Option("--budget", help="Cap on this run's spend in USD.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    ) -> None:
        """Triage support tickets: intent and urgency (nano), grounded drafts (mini), escalations (large)."""
        from tierwise.cli.progress import Watch
        from tierwise.session import Session
        from tierwise.systems.support_triage import (
            LineWriter,
            TriageItem,
            fitting_set,
            read_examples,
            read_kb,
            read_labels,
            read_tickets,
            triage,
        )

        check_budget(budget)
        if out.suffix.lower() not in (".jsonl", ".ndjson"):
            raise fail(f"--out {str(out)!r} must end in .jsonl: the output is one JSON line per ticket")

        async def go() -> TriageReport:
            tickets = read_tickets(input)
            label_list = read_labels(labels) if labels else None
            pairs = read_examples(examples) if examples else None
            passages = read_kb(kb) if kb else None
            fitting_set(pairs, label_list)  # no intents at all fails here, before a run is opened
            meta = {
                "tickets": len(tickets),
                "labels": len(label_list or []),
                "examples": len(pairs[0]) if pairs else 0,
                "kb_passages": len(passages or []),
            }
            async with (
                Session(load_config(), budget_usd=budget) as s,
                s.run(
                    "system:support-triage", f"{len(tickets)} tickets", budget_usd=budget, metadata=meta
                ) as scope,
                LineWriter(out) as write,  # each ticket's line as it finishes, not all at the end
            ):
                watch.attach(scope)

                def done(n: int, item: TriageItem) -> None:
                    write(n, item)
                    path = "+".join(item.tier_path)
                    watch.say(f"ticket {n + 1}/{len(tickets)}: {item.intent} · {item.action} · {path}")

                return await triage(
                    scope, tickets, examples=pairs, labels=label_list, kb=passages, on_item=done
                )

        watch = Watch()
        report = run_async(go, watch)
        if as_json:
            print_json(report.summary(str(out)))
        else:
            _show(report, out)
