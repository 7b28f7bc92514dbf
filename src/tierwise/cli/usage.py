"""Usage errors (a missing option, a value that is not a number) as one ``error:`` line, like every other
error the CLI prints, instead of click's multi-line usage box; and an OSError on a path the user named
(a name too long for the file system, say) as one line rather than a traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from tierwise.cli.common import fail

try:  # recent typer ships its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - typer on the click package
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError


class OneLineErrors(TyperGroup):
    """The top-level group: runs the command non-standalone and reports click's errors itself."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        args = list(sys.argv[1:] if args is None else args)
        for arg in args:
            # Bytes that are not UTF-8 reach Python as lone surrogates, which no file, ledger row or
            # request can hold: refuse them here rather than deep inside with a UnicodeEncodeError.
            if not _is_utf8(arg):
                shown = arg.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")[:80]
                message = f"argument '{shown}' is not valid UTF-8 text: check the terminal's encoding"
                raise SystemExit(fail(message, 2).exit_code)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:
            exc.show()  # `tierwise` alone, or a group alone: the help text is the answer
            sys.exit(exc.exit_code)
        except ClickException as exc:
            where = exc.ctx.command_path if isinstance(exc, UsageError) and exc.ctx else None
            hint = f" (see `{where} --help`)" if where else ""
            raise SystemExit(fail(f"{exc.format_message()}{hint}", exc.exit_code).exit_code) from None
        except OSError as exc:
            # A path the user named that the system refuses (too long, a device, no permission): the
            # system's reason and the path are the whole story, and a traceback would add nothing.
            name = str(exc.filename or "")
            name = f" {name[:120]!r}" + ("…" if len(name) > 120 else "") if name else ""
            raise SystemExit(fail(f"{exc.strerror or exc}:{name}", 2).exit_code) from None
        except typer.Abort:
            raise SystemExit(fail("aborted", 1).exit_code) from None
        # Non-standalone, click returns the command's value (None) or the code of a typer.Exit.
        sys.exit(code if isinstance(code, int) else 0)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
