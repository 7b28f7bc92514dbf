"""The ``tierwise`` command: route, ask, models, runs, spend, eval, chaos-server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from tierwise.cli.batch_cmd import register as register_batch_command
from tierwise.cli.common import (
    check_budget,
    console,
    fail,
    guarded,
    load_config,
    print_json,
    run_async,
    set_config_path,
)
from tierwise.cli.keys_cmd import register as register_keys_commands
from tierwise.cli.ledger_cmds import register as register_ledger_commands
from tierwise.cli.orchestrate_cmd import register as register_orchestrate_commands
from tierwise.cli.serve_cmd import register as register_serve_command
from tierwise.cli.systems_cmd import register as register_system_commands
from tierwise.cli.usage import OneLineErrors

app = typer.Typer(
    name="tierwise",
    help="Route each unit of LLM work to the right model tier; meter every call.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=OneLineErrors,
    # Click's plain help: flags read as flags (`--json`, not `--json <bool>`) and rich's help renderer,
    # a tenth of the start-up, is not loaded for --help.
    rich_markup_mode=None,
)


@app.callback()
def _main(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="tierwise.toml to use (else $TIERWISE_CONFIG or ./tierwise.toml)"),
    ] = None,
) -> None:
    set_config_path(config)


def _text(text: str) -> str:
    if not text.strip():
        raise fail('the text is empty: pass the request as an argument, e.g. tierwise ask "What is 2+2?"')
    return text


def _schema(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from tierwise.runtime.validation import load_schema

    return guarded(lambda: load_schema(path))


@app.command()
def route(
    text: Annotated[str, typer.Argument(help="the task, in words")],
    kind: Annotated[str | None, typer.Option(help="task kind; inferred from the text when omitted")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Decide which tier and model would run TEXT, and why. No answer is generated; a router that reads
    the task with a model (nano, a cascade's judge) says so and makes that routing call."""
    from tierwise.core import parse_kind  # pydantic and the vocabulary: only when a command runs
    from tierwise.session import Session  # the ledger (SQLAlchemy) and providers: likewise

    text = _text(text)
    if kind is not None:
        guarded(lambda: parse_kind(kind))
    config = guarded(load_config)

    async def go() -> tuple[Any, bool]:
        async with Session(config) as s:
            return await s.route(text, kind=kind), s.router_calls_model

    decision, calls_model = run_async(go)
    data = {**decision.to_dict(), "router_calls_model": calls_model}
    if as_json:
        print_json(data)
        return
    # Model ids and reasons come from the user's config and rules: text, never markup.
    console.print(f"[bold]{data['tier']}[/] → {escape(data['model'])}  (kind {data['kind']})")
    console.print(f"[dim]{escape(data['reason'])}[/]")
    if calls_model:
        n = data.get("routing_calls", 0)
        console.print(f"[dim]the {data['router']} router decides with a model: {n} routing call(s) made[/]")


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="the request")],
    tier: Annotated[str | None, typer.Option(help="force a tier: large, mini or nano")] = None,
    model: Annotated[str | None, typer.Option(help="force a model id (see `tierwise models`)")] = None,
    kind: Annotated[str | None, typer.Option(help="task kind; inferred when omitted")] = None,
    schema: Annotated[Path | None, typer.Option(help="JSON Schema file the answer must satisfy")] = None,
    budget: Annotated[float | None, typer.Option(help="cap for this run, in USD")] = None,
    max_output_tokens: Annotated[int | None, typer.Option(help="output token limit")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Route TEXT, call the chosen model, validate, record it in the ledger and print the answer."""
    from tierwise.core import parse_kind, parse_tier
    from tierwise.session import Session

    text = _text(text)
    budget = check_budget(budget)
    if tier is not None and model is not None:
        raise fail("pass either --tier or --model, not both")
    if tier is not None:
        guarded(lambda: parse_tier(tier))
    if kind is not None:
        guarded(lambda: parse_kind(kind))
    json_schema = _schema(schema)
    config = guarded(load_config)
    if max_output_tokens is not None and max_output_tokens <= 0:
        raise fail("--max-output-tokens must be greater than 0")

    async def go() -> Any:
        async with Session(config, budget_usd=budget) as s:
            return await s.call(
                text,
                tier=tier,
                model=model,
                kind=kind,
                schema=json_schema,
                max_output_tokens=max_output_tokens,
            )

    result = run_async(go)
    data = result.to_dict()
    if as_json:
        print_json(data)
        return
    # A model's answer is printed as it came: "[/]" or "[link=...]" in it must not be read as markup.
    console.print(data["output"] if json_schema else data["text"], highlight=False, markup=False)
    cost = "unknown" if data["cost_usd"] is None else f"${data['cost_usd']:.6f}"
    notional = " (notional)" if data["notional"] else ""
    console.print(
        f"[dim]{data['tier']} · {escape(data['model'])} · {cost}{notional} · run {data['run_id'][:12]}[/]"
    )


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The model catalog, with prices per 1M tokens and which model serves each tier."""
    config = guarded(load_config)
    serving = {model_id: tier.value for tier, model_id in config.tiers.items()}
    rows = [
        {
            "id": m.id,
            "tier": m.tier.value,
            "serves_tier": serving.get(m.id),
            "input_per_mtok": m.input_per_mtok,
            "cached_input_per_mtok": m.cached_input_per_mtok,
            "output_per_mtok": m.output_per_mtok,
            "context_window": m.context_window,
            "max_output_tokens": m.max_output_tokens,
            "capabilities": sorted(c.value for c in m.capabilities),
            "notional": m.notional,
        }
        for m in config.catalog
    ]
    if as_json:
        print_json(rows)
        return
    # Ids and prices are never cut (they fold at worst); which model serves each tier is a line below,
    # with its full id, rather than a column that would push the table past 80 columns.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("model", no_wrap=True, overflow="fold")
    table.add_column("tier", min_width=5)
    for label in ("in", "cached", "out"):  # $ per 1M tokens, as the note below says
        table.add_column(label, justify="right", no_wrap=True, overflow="fold")
    table.add_column("context", justify="right", no_wrap=True)
    for r in rows:
        mark = "*" if r["notional"] else ""

        def price(v: float | None, mark: str = mark) -> str:
            return "?" if v is None else f"{v:.3f}{mark}"

        table.add_row(
            escape(r["id"]) + (" ◀" if r["serves_tier"] else ""),
            r["tier"],
            price(r["input_per_mtok"]),
            price(r["cached_input_per_mtok"]),
            price(r["output_per_mtok"]),
            _tokens(r["context_window"]),
        )
    console.print(table)
    served = ", ".join(f"{tier.value} {escape(mid)}" for tier, mid in config.tiers.items())
    console.print(f"◀ serving: {served}", highlight=False)
    note = "prices: $ per 1M tokens · * notional: a local model, priced like gpt-5.4 of its tier"
    console.print(f"[dim]{note}[/]")


def _tokens(n: int) -> str:
    """A context window, short: 1.05M, 400k, 8.2k, 512 (the exact number is in --json)."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.3g}M"
    if n >= 1000:
        return f"{n / 1000:.3g}k"
    return str(n)


@app.command("chaos-server")
def chaos_server(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0 picks a free one)")] = 8011,
    latency: Annotated[float, typer.Option(help="fixed latency per request, seconds")] = 0.0,
    script: Annotated[Path | None, typer.Option(help="JSON script of replies and faults")] = None,
) -> None:
    """A fault-injecting OpenAI-compatible server on loopback, for testing pipelines."""
    from tierwise.testing import ChaosServerError, load_script, serve
    from tierwise.testing.runner import check_options

    if script is not None and not script.is_file():
        raise fail(f"script file {str(script)!r} not found")
    try:
        # Everything is checked, and the port bound, before the server says it is listening.
        check_options(port, latency)
        serve(host="127.0.0.1", port=port, script=load_script(script), latency_s=latency)
    except ChaosServerError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        pass


register_ledger_commands(app)
register_batch_command(app)
register_keys_commands(app)
register_orchestrate_commands(app)
register_serve_command(app)
register_system_commands(app)


def _eval_app() -> typer.Typer:
    try:
        from tierwise.cli.eval_cmd import eval_app
    except ModuleNotFoundError as exc:
        if exc.name not in ("tierwise.cli.eval_cmd", "sklearn", "matplotlib"):
            raise
        eval_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
    from tierwise.cli.eval_shadow import register as register_shadow
    from tierwise.cli.eval_swap import register as register_swap

    register_shadow(eval_app)
    register_swap(eval_app)
    return eval_app


app.add_typer(_eval_app(), name="eval", help="Measure routing quality: replay, train, shadow-report, swap.")


def main() -> None:
    app()
