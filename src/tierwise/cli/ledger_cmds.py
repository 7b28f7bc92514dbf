"""Ledger views on the CLI: runs, runs show, spend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from tierwise.cli.common import console, fail, guarded, load_config, print_json

if TYPE_CHECKING:  # SQLAlchemy loads with the ledger: only when a command reads it, not for --help
    from tierwise.ledger import Ledger

MAX_LIMIT = 100_000


def _ledger() -> Ledger:
    from tierwise.ledger import Ledger

    config = guarded(load_config)
    return guarded(lambda: Ledger(config.ledger.url))


def _money(v: float | None, notional: bool = False) -> str:
    if v is None:
        return "unknown"
    return f"${v:.6f}" + ("*" if notional else "")


_COUNTS = ("calls", "input_tokens", "cached_input_tokens", "output_tokens")


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The footer of `spend`: sums over the groups; the cost is unknown if any group's is."""
    costs = [r["cost_usd"] for r in rows]
    return {
        **{k: sum(r[k] for r in rows) for k in _COUNTS},
        "cost_usd": None if any(c is None for c in costs) else sum(costs),
        "notional": any(r["notional"] for r in rows),
    }


def register(app: typer.Typer) -> None:
    runs_app = typer.Typer(
        help="Runs recorded in the ledger.", invoke_without_command=True, rich_markup_mode=None
    )

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
        # Ids and costs are never cut (the label and kind wrap instead); the full id is in --json, and
        # its first 12 characters are what `runs show` and `resume` take.
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("run", no_wrap=True, overflow="fold")
        table.add_column("kind", overflow="fold")
        table.add_column("status", no_wrap=True)
        table.add_column("calls", justify="right", no_wrap=True, min_width=5)
        table.add_column("cost", justify="right", no_wrap=True, overflow="fold")
        table.add_column("started", no_wrap=True)
        table.add_column("label", ratio=1)
        for r in rows:
            table.add_row(  # labels echo what users typed: text, never markup
                r["id"][:12],
                escape(r["kind"].removeprefix("system:")),
                escape(r["status"]),
                str(r["calls"]),
                _money(r["cost_usd"], r["notional"]),
                r["started_at"][5:16].replace("T", " "),  # MM-DD HH:MM, UTC
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
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_footer=bool(rows))
        total = _total(rows)
        # The key (a model or run id) and the costs are never cut; token counts give way first.
        table.add_column(by, "total", no_wrap=True, overflow="fold")
        for name, key in (("calls", "calls"), ("input", "input_tokens"), ("cached", "cached_input_tokens")):
            table.add_column(name, f"{total[key]:,}", justify="right", overflow="fold", min_width=len(name))
        out = f"{total['output_tokens']:,}"
        table.add_column("output", out, justify="right", overflow="fold", min_width=6)
        cost = _money(total["cost_usd"], total["notional"])
        table.add_column("cost", cost, justify="right", no_wrap=True, overflow="fold")
        for r in rows:
            table.add_row(
                escape(str(r["key"])),
                f"{r['calls']:,}",
                f"{r['input_tokens']:,}",
                f"{r['cached_input_tokens']:,}",
                f"{r['output_tokens']:,}",
                _money(r["cost_usd"], r["notional"]),
            )
        console.print(table)
        console.print("[dim]* notional: local models priced like the gpt-5.4 model of their tier[/]")
