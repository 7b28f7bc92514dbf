"""Read-only git tools (log, diff) for a workspace that is a git repository; git runs through
:func:`tierwise.tools.gitcmd.run_git`, so nothing the repository's own config names can run."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tierwise.tools.gitcmd import run_git
from tierwise.tools.workspace import Tool, ToolError, Workspace, _obj

# A revision as a model may name it; never starting with '-', so it cannot smuggle in an option.
_REV = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.~^/@{}-]{0,99}$")
_MAX_OUTPUT = 20_000


def _git(ws: Workspace, *args: str) -> str:
    # worktree=True: the workspace root is the repository, whatever its config says about core.worktree
    proc = run_git(ws.root, *args, timeout=20, worktree=True)
    if proc.returncode != 0:
        raise ToolError(f"git {args[0]} failed: {' '.join(proc.stderr.split())[:500]}")
    out = proc.stdout
    if len(out) > _MAX_OUTPUT:
        out = out[:_MAX_OUTPUT] + f"\n... (truncated at {_MAX_OUTPUT} characters)"
    return out or "(no output)"


def _rev(value: object) -> str | None:
    if value in (None, ""):
        return None
    rev = str(value)
    if not _REV.match(rev):
        raise ToolError(f"revision {rev!r} is not a plain git revision (e.g. HEAD~1, main, a1b2c3)")
    return rev


def git_log(ws: Workspace, args: Mapping[str, Any]) -> str:
    n = max(1, min(int(args.get("max_count", 20) or 20), 200))
    path = ws.rel(ws.resolve(str(args.get("path", ".") or ".")))
    return _git(ws, "log", f"--max-count={n}", "--format=%h %ad %an: %s", "--date=short", "--", path)


def git_diff(ws: Workspace, args: Mapping[str, Any]) -> str:
    rev = _rev(args.get("rev"))
    path = ws.rel(ws.resolve(str(args.get("path", ".") or ".")))
    cmd = ["diff"]  # run_git adds --no-ext-diff --no-textconv
    if rev:
        cmd.append(rev)
    return _git(ws, *cmd, "--", path)


def git_tools(ws: Workspace) -> tuple[Tool, ...]:
    """git log / diff of the workspace repository (read-only)."""
    where = f"git:{ws.root}"
    return (
        Tool(
            "git_log",
            "Recent commits touching a workspace path: hash, date, author, subject.",
            _obj({"path": {"type": "string"}, "max_count": {"type": "integer"}}, ["path"]),
            lambda a: git_log(ws, a),
            reads=(where,),
        ),
        Tool(
            "git_diff",
            "Diff of a workspace path against a revision (default: uncommitted changes).",
            _obj({"path": {"type": "string"}, "rev": {"type": "string"}}, ["path"]),
            lambda a: git_diff(ws, a),
            reads=(where,),
        ),
    )


def is_git_repo(ws: Workspace) -> bool:
    return (ws.root / ".git").exists()
