"""``tierwise run SYSTEM ...``: the five ready systems, each registered by its own module.

Registering is cheap: a ``run_*`` module imports only typer, rich and the CLI plumbing at its top, and its
command imports ``tierwise.systems.X`` (with scikit-learn, scipy, Playwright, pypdf, ...) when it runs, so
``tierwise --help`` and ``tierwise route`` never load a system. tests/cli/test_startup.py holds it to that.
"""

from __future__ import annotations

import importlib

import typer

run_app = typer.Typer(help="Run one of the ready systems.", no_args_is_help=True, rich_markup_mode=None)

# Each module defines `register(run_app)` adding its command.
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
