"""``tierwise eval shadow-report``: where routing looks wrong, from the ledger's shadow checks."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tierwise.cli.common import console, fail, guarded, load_config, print_json


def register(eval_app: typer.Typer) -> None:
    @eval_app.command("shadow-report")
    def shadow_report_cmd(
        alarm: Annotated[
            float | None, typer.Option(help="alarm when disagreement exceeds this (default: [shadow] config)")
        ] = None,
        run_id: Annotated[str | None, typer.Option("--run", help="only this run")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Shadow agreement, escalation rate and cost by task kind and tier, with alarms."""
        from tierwise.evaluation.shadow import shadow_report
        from tierwise.ledger import Ledger  # SQLAlchemy: only when the command runs

        config = guarded(load_config)
        threshold = config.shadow.alarm_disagreement if alarm is None else alarm
        if not 0 <= threshold <= 1:
            raise fail(f"--alarm must be between 0 and 1, got {threshold}")
        ledger = guarded(lambda: Ledger(config.ledger.url))
        try:
            rid = guarded(lambda: ledger.get_run(run_id).id) if run_id else None
            report = shadow_report(ledger.calls(run_id=rid), alarm_disagreement=threshold)
        finally:
            ledger.close()
        if as_json:
            print_json(report)
            return
        if not report["shadowed"]:
            console.print("no shadow checks recorded yet: set [shadow] share = 0.05 in tierwise.toml")
        table = Table("kind", "tier", "routed", "escalated", "shadowed", "agree", "shadow $", "alarm")
        for r in report["groups"]:
            table.add_row(
                r["kind"],
                r["tier"],
                str(r["routed_calls"]),
                "-" if r["escalation_rate"] is None else f"{r['escalation_rate']:.0%}",
                str(r["shadowed"]),
                "-" if r["agreement_rate"] is None else f"{r['agreement_rate']:.0%}",
                f"{r['shadow_cost_usd']:.6f}",
                "[red]ALARM[/]" if r["alarm"] else "",
            )
        console.print(table)
        if report["alarms"]:
            console.print(f"[red]routing looks wrong for: {', '.join(report['alarms'])}[/]")
