"""The repository side of the coding assistant: input checks, literal code search, `git apply --check`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tierwise.errors import InputError, ToolError
from tierwise.systems.coding_assistant.types import CodePlan
from tierwise.tools import Workspace, is_git_repo
from tierwise.tools.gitcmd import git_binary, run_git

MAX_SCAN_BYTES = 300_000  # larger files are generated or data: not worth grepping
_STOP = frozenset(
    {"the", "and", "for", "with", "that", "this", "from", "what", "which", "where", "when", "how", "does",
     "into", "are", "was", "not", "you", "can", "add", "fix", "make", "use", "file", "files", "code",
     "repo", "function", "should", "would", "please"}
)  # fmt: skip


def check_inputs(repo: str | Path, request: str) -> Workspace:
    """The repository as a workspace, or InputError for an empty request or a path that is no git repo."""
    if not isinstance(request, str) or not request.strip():
        raise InputError('the request is empty: say what you need, e.g. "Where is the config loaded?"')
    path = Path(repo).expanduser()
    if not path.is_dir():
        raise InputError(f"--repo {str(path)!r} does not exist or is not a directory")
    ws = Workspace(path)
    if not is_git_repo(ws):
        raise InputError(f"--repo {str(path)!r} is not a git repository: pass the root of a git checkout")
    git_binary(InputError)  # the coding assistant needs git to check diffs
    return ws


def git_apply_check(repo: Path, diff: str) -> str | None:
    """None when ``git apply --check`` accepts ``diff`` in ``repo``, else git's error message."""
    if not diff.strip():
        return "the diff is empty"
    # `git apply` reads worktree files through the repository's clean filters: run_git blanks them.
    try:
        proc = run_git(repo, "apply", "--check", "--verbose", "-", input=diff, timeout=30, worktree=True)
    except ToolError as exc:  # git missing or stuck: the diff is not known to apply
        return str(exc)
    if proc.returncode == 0:
        return None
    return (proc.stderr or proc.stdout).strip()[:1500] or f"git apply exited with {proc.returncode}"


def search_terms(request: str, plan: CodePlan) -> list[str]:
    """The planner's searches, then the request's own words (stop words dropped), at most 20."""
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_.]{2,}", request)
    terms = [s.strip() for s in plan.searches if 2 < len(s.strip()) <= 80]
    terms += [w for w in words if w.lower() not in _STOP]
    return list(dict.fromkeys(terms))[:20]


def text_files(ws: Workspace) -> Iterator[tuple[str, str]]:
    """(relative path, text) of every readable text file of the repository, read through the workspace:
    no symlink, no hard link, nothing swapped in after the listing; large and binary files skipped."""
    for p in ws.files("."):
        rel = ws.rel(p)
        try:
            data = ws.read_bytes(rel, MAX_SCAN_BYTES)
        except ToolError:
            continue
        if len(data) > MAX_SCAN_BYTES or b"\x00" in data[:4096]:
            continue  # too large (generated or data) or binary
        yield rel, data.decode("utf-8", errors="replace")


def search_files(ws: Workspace, terms: list[str], limit: int) -> list[tuple[str, float]]:
    """Rank repository files by literal, case-insensitive hits of ``terms`` (path hits count more).

    Literal strings only: a model-written regular expression could backtrack for minutes.
    """
    lowered = [t.lower() for t in terms]
    scored: list[tuple[str, float]] = []
    for rel, raw in text_files(ws):
        text = raw.lower()
        score = sum(min(text.count(t), 10) + 5 * (t in rel.lower()) for t in lowered)
        if score:
            scored.append((rel, float(score)))
    scored.sort(key=lambda x: (-x[1], x[0]))
    return scored[:limit]
