"""``tierwise keys``: create, list and revoke the proxy's API keys (stored hashed in the ledger)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from tierwise.cli.common import console, err_console, fail, guarded, load_config, print_json

if TYPE_CHECKING:  # SQLAlchemy loads with the ledger: only when a command runs, not for --help
    from sqlalchemy.engine import Engine


def _engine() -> Engine:
    from tierwise.ledger import keys

    config = guarded(load_config)
    return guarded(lambda: keys.open_engine(config.ledger.url))


def _budget_text(budget: float | None, period: str) -> str:
    return "none" if budget is None else f"${budget:.6g}/{period}"


def register(app: typer.Typer) -> None:
    keys_app = typer.Typer(
        help="API keys of the proxy (`tierwise serve`).", no_args_is_help=True, rich_markup_mode=None
    )

    @keys_app.command("create")
    def create(
        name: Annotated[str, typer.Argument(help="1-64 characters of letters, digits, '.', '_' or '-'")],
        budget: Annotated[float | None, typer.Option(help="spend cap per period, in USD")] = None,
        period: Annotated[str, typer.Option(help="budget period: day or month (UTC)")] = "month",
        rpm: Annotated[int | None, typer.Option(help="requests per minute allowed")] = None,
        admin: Annotated[bool, typer.Option("--admin", help="may open the dashboard")] = False,
    ) -> None:
        """Create a key. The key is printed once, on stdout; only its hash is stored."""
        from tierwise.ledger import keys

        guarded(lambda: keys.check_name(name))
        guarded(lambda: keys.check_limits(budget, period, rpm))
        engine = _engine()
        try:
            row, secret = guarded(
                lambda: keys.create_key(engine, name, budget_usd=budget, period=period, rpm=rpm, admin=admin)
            )
        finally:
            engine.dispose()
        limits = _budget_text(row.budget_usd, row.period) + (f", {row.rpm} rpm" if row.rpm else "")
        role = ", admin" if row.admin else ""
        err_console.print(
            f"created key {row.name} (id {row.id[:12]}, budget {limits}{role})", highlight=False
        )
        sys.stdout.write(secret + "\n")  # alone on stdout: KEY=$(tierwise keys create NAME) works
        sys.stdout.flush()
        err_console.print(
            "this is the only time the key is shown: store it now (tierwise keeps only its hash)",
            style="bold",
            highlight=False,
        )

    @keys_app.command("list")
    def list_(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
        """The keys with their budget, spend this period, rate limit and status (never the key itself)."""
        from tierwise.ledger import keys, utcnow
        from tierwise.server.key_budget import period_bounds

        engine = _engine()
        try:
            rows: list[dict[str, Any]] = []
            now = utcnow()
            for k in guarded(lambda: keys.list_keys(engine)):
                start, _ = period_bounds(now, k.period)
                rows.append(
                    {
                        "name": k.name,
                        "id": k.id,
                        "prefix": k.prefix,
                        "budget_usd": k.budget_usd,
                        "period": k.period,
                        "period_start": start.isoformat(),
                        "spent_usd": round(keys.key_spend(engine, k.id, start), 8),
                        "rpm": k.rpm,
                        "admin": k.admin,
                        "status": k.status,
                        "created_at": k.created_at.isoformat(),
                    }
                )
        finally:
            engine.dispose()
        if as_json:
            print_json(rows)
            return
        if not rows:
            console.print("no keys yet: create one with `tierwise keys create NAME`", highlight=False)
            return
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
        # Fits 80 columns: the name folds, everything else stays whole; full ids and times are in --json.
        table.add_column("name", min_width=10, overflow="fold")
        for col in ("id", "prefix", "budget", "spent", "rpm", "status", "created"):
            table.add_column(col, no_wrap=True, justify="right" if col in ("spent", "rpm") else "left")
        for r in rows:
            table.add_row(
                escape(r["name"]) + (" (admin)" if r["admin"] else ""),
                r["id"][:8],
                r["prefix"] + "…",
                _budget_text(r["budget_usd"], r["period"]),
                f"${r['spent_usd']:.4g}",  # exact in --json
                "-" if r["rpm"] is None else str(r["rpm"]),
                r["status"],
                r["created_at"][:10],
            )
        console.print(table)

    @keys_app.command("revoke")
    def revoke(name_or_id: Annotated[str, typer.Argument(help="the key's name or id")]) -> None:
        """Revoke a key: its requests get 403 within about a second, in every worker."""
        from tierwise.ledger import keys

        if not name_or_id.strip():
            raise fail("pass the key's name or id: see `tierwise keys list`")
        engine = _engine()
        try:
            row, changed = guarded(lambda: keys.revoke(engine, name_or_id))
        finally:
            engine.dispose()
        if changed:
            console.print(f"revoked key {escape(row.name)} (id {row.id[:12]})", highlight=False)
        else:
            console.print(f"key {escape(row.name)} was already revoked", highlight=False)

    app.add_typer(keys_app, name="keys")
