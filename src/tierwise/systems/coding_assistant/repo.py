"""The repository side of the coding assistant: input checks, literal code search, `git apply --check`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tierwise.errors import InputError
from tierwise.systems.coding_assistant.types import CodePlan
from tierwise.tools import Workspace, is_git_repo

MAX_SCAN_BYTES = 300_000  # larger files are generated or data: not worth grepping
_STOP = frozenset(
    {"the", "and", "for", "with", "that", "this", "from", "what", "which", "where", "when", "how", "does",
     "into", "are", "was", "not", "you", "can", "add", "fix", "make", "use", "file", "files", "code",
     "repo", "function", "should", "would", "please"}
)  # fmt: skip


def _git_env() -> dict[str, str]:
    # No user or system config: nothing in them (hooks, external diff tools) should run on our behalf.
    return {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": "/usr/bin:/bin"}


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
    if shutil.which("git") is None:
        raise InputError("git is not installed: the coding assistant needs it to check diffs")
    return ws


def git_apply_check(repo: Path, diff: str) -> str | None:
    """None when ``git apply --check`` accepts ``diff`` in ``repo``, else git's error message."""
    if not diff.strip():
        return "the diff is empty"
    git = shutil.which("git") or "git"
    proc = subprocess.run(
        [git, "-C", str(repo), "apply", "--check", "--verbose", "-"],
        input=diff, capture_output=True, text=True, timeout=30, env=_git_env(), errors="replace",
    )  # fmt: skip
    if proc.returncode == 0:
        return None
    return (proc.stderr or proc.stdout).strip()[:1500] or f"git apply exited with {proc.returncode}"


def search_terms(request: str, plan: CodePlan) -> list[str]:
    """The planner's searches, then the request's own words (stop words dropped), at most 20."""
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_.]{2,}", request)
    terms = [s.strip() for s in plan.searches if 2 < len(s.strip()) <= 80]
    terms += [w for w in words if w.lower() not in _STOP]
    return list(dict.fromkeys(terms))[:20]


def search_files(ws: Workspace, terms: list[str], limit: int) -> list[tuple[str, float]]:
    """Rank repository files by literal, case-insensitive hits of ``terms`` (path hits count more).

    Literal strings only: a model-written regular expression could backtrack for minutes.
    """
    lowered = [t.lower() for t in terms]
    scored: list[tuple[str, float]] = []
    for p in ws.files("."):
        rel = ws.rel(p.resolve())
        try:
            if p.stat().st_size > MAX_SCAN_BYTES:
                continue
            data = p.read_bytes()
        except OSError:
            continue
        if b"\x00" in data[:4096]:
            continue  # binary
        text = data.decode("utf-8", errors="replace").lower()
        score = sum(min(text.count(t), 10) + 5 * (t in rel.lower()) for t in lowered)
        if score:
            scored.append((rel, float(score)))
    scored.sort(key=lambda x: (-x[1], x[0]))
    return scored[:limit]
