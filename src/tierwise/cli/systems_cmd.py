"""``tierwise run SYSTEM ...``: the five ready systems, each registered by its own module."""

from __future__ import annotations

import importlib

import typer

run_app = typer.Typer(help="Run one of the ready systems.", no_args_is_help=True)

# Each module defines `register(run_app)` adding its command; a module whose optional extra is missing
# (e.g. Playwright for computer-use) is skipped so the rest of the CLI still works.
_SYSTEM_COMMANDS = (
    "tierwise.cli.run_coding_assistant",
    "tierwise.cli.run_pr_review",
    "tierwise.cli.run_support_triage",
    "tierwise.cli.run_computer_use",
    "tierwise.cli.run_research",
)


def register(app: typer.Typer) -> None:
    for name in _SYSTEM_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not written yet
            raise
        module.register(run_app)
    app.add_typer(run_app, name="run")
