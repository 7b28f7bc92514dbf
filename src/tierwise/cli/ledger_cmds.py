"""Ledger views on the CLI: runs, runs show, spend."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from tierwise.cli.common import console, fail, guarded, load_config, print_json
from tierwise.ledger import Ledger

MAX_LIMIT = 100_000


def _ledger() -> Ledger:
    config = guarded(load_config)
    return guarded(lambda: Ledger(config.ledger.url))


def _money(v: float | None, notional: bool = False) -> str:
    if v is None:
        return "unknown"
    return f"${v:.6f}" + ("*" if notional else "")


def register(app: typer.Typer) -> None:
    runs_app = typer.Typer(help="Runs recorded in the ledger.", invoke_without_command=True)

    @runs_app.callback()
    def runs(
        ctx: typer.Context,
        limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """List recent runs with their status and cost."""
        if ctx.invoked_subcommand is not None:
            return
        if not 1 <= limit <= MAX_LIMIT:  # SQLite's LIMIT is a 64-bit integer: bound it before the query
            raise fail(f"--limit must be between 1 and {MAX_LIMIT:,}, got {limit}")
        ledger = _ledger()
        try:
            rows = []
            for r in guarded(lambda: ledger.runs(limit=limit)):
                summary = ledger.run_summary(r.id)
                rows.append(
                    {
                        "id": r.id,
                        "kind": r.kind,
                        "status": r.status,
                        "label": r.label,
                        "started_at": r.started_at.isoformat(),
                        "calls": summary.get("calls", 0),
                        "cost_usd": summary.get("cost_usd"),
                        "notional": summary.get("notional", False),
                    }
                )
        finally:
            ledger.close()
        if as_json:
            print_json(rows)
            return
        table = Table("run", "kind", "status", "calls", "cost", "started", "label")
        for r in rows:
            table.add_row(  # labels echo what users typed: text, never markup
                r["id"][:12],
                escape(r["kind"]),
                escape(r["status"]),
                str(r["calls"]),
                _money(r["cost_usd"], r["notional"]),
                r["started_at"][:19],
                escape(r["label"][:50]),
            )
        console.print(table)

    @runs_app.command("show")
    def show(
        run_id: Annotated[str, typer.Argument(help="run id or a unique prefix")],
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """One run: its calls in order, with tier, model, tokens, cost and the routing reason."""
        ledger = _ledger()
        try:
            run = guarded(lambda: ledger.get_run(run_id))
            calls = ledger.calls(run_id=run.id)
            summary = ledger.run_summary(run.id)
            steps = ledger.steps(run.id)
        finally:
            ledger.close()
        data: dict[str, Any] = {
            "run": {
                "id": run.id,
                "kind": run.kind,
                "status": run.status,
                "label": run.label,
                "error": run.error,
            },
            "summary": summary,
            "steps": [
                {"step_id": s.step_id, "status": s.status, "tier": s.tier, "cost_usd": s.cost_usd}
                for s in steps
            ],
            "calls": [
                {
                    "step_id": c.step_id,
                    "operation": c.operation,
                    "kind": c.task_kind,
                    "tier": c.tier,
                    "model": c.model,
                    "served_model": c.served_model,
                    "status": c.status,
                    "input_tokens": c.input_tokens,
                    "output_tokens": c.output_tokens,
                    "cost_usd": c.cost_usd,
                    "latency_ms": round(c.latency_ms, 1),
                    "reason": c.reason,
                    "error": c.error,
                }
                for c in calls
            ],
        }
        if as_json:
            print_json(data)
            return
        # The run's tree: run → steps → calls (the same nesting as its OpenTelemetry spans).
        head = " · ".join(escape(v) for v in (run.status, run.label[:80]))
        tree = Tree(f"[bold]run {escape(run.id)}[/] {escape(run.kind)} · {head}")
        if run.error:
            tree.add(f"[red]{escape(run.error)}[/]")
        branches: dict[str | None, Tree] = {}
        step_status = {s["step_id"]: s["status"] for s in data["steps"]}
        for c in data["calls"]:
            sid = c["step_id"]
            if sid not in branches:
                label = f"step {sid} · {step_status.get(sid, 'running')}" if sid else "run-level calls"
                branches[sid] = tree.add(escape(label))
            status = c["status"] if c["status"] == "ok" else f"[red]{escape(c['status'])}[/]"
            branches[sid].add(
                f"{escape(c['operation'])} {c['tier']} {escape(c['model'])} {status} "
                f"in={c['input_tokens']} out={c['output_tokens']} {_money(c['cost_usd'])} {c['latency_ms']}ms"
                f" [dim]{escape((c['reason'] or '')[:70])}[/]"
            )
        console.print(tree)
        console.print(f"total {_money(summary.get('cost_usd'), summary.get('notional', False))}")

    app.add_typer(runs_app, name="runs")

    @app.command()
    def spend(
        by: Annotated[str, typer.Option(help="group by tier, model, run or kind")] = "tier",
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Total spend from the ledger, grouped; notional (local-model) costs are marked."""
        if by not in ("tier", "model", "run", "kind"):
            raise fail(f"--by {by!r} is not one of tier, model, run, kind")
        key: Literal["tier", "model", "run", "kind"] = by  # type: ignore[assignment]
        ledger = _ledger()
        try:
            rows = guarded(lambda: ledger.spend(by=key))
        finally:
            ledger.close()
        if as_json:
            print_json(rows)
            return
        table = Table(by, "calls", "input", "cached", "output", "cost")
        for r in rows:
            table.add_row(
                escape(str(r["key"])),
                str(r["calls"]),
                str(r["input_tokens"]),
                str(r["cached_input_tokens"]),
                str(r["output_tokens"]),
                _money(r["cost_usd"], r["notional"]),
            )
        console.print(table)
        console.print("[dim]* notional: local models priced like the gpt-5.4 model of their tier[/]")
