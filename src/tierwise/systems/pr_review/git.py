"""The diff a PR review reads: changed files between two refs, from git, confined to one repository.

git runs through :func:`tierwise.tools.gitcmd.run_git`, so nothing the repository under review configures
(fsmonitor, hooks, external diff, textconv, filters, pagers, signature programs) runs, and every ref is
checked and resolved to a commit before it is used.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tierwise.errors import InputError
from tierwise.tools.gitcmd import run_git

# A ref as a user names it; never starting with '-', so it cannot be read as an option.
_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.~^/@{}+-]{0,199}$")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_TIMEOUT_S = 30


@dataclass(slots=True)
class FileDiff:
    """One changed file: its path at head, git's status letter, and the patch with new-side line numbers."""

    path: str
    status: str  # A added, M modified, R renamed, C copied, T type change, D deleted
    old_path: str | None = None
    patch: str = ""
    binary: bool = False
    additions: int = 0
    deletions: int = 0
    added: list[tuple[int, str]] = field(default_factory=list)  # new-side number and text of '+' lines
    visible_lines: list[int] = field(default_factory=list)  # new-side numbers of '+' and context lines

    @property
    def added_lines(self) -> list[int]:
        return [n for n, _ in self.added]

    @property
    def reviewable(self) -> bool:
        return self.status != "D" and not self.binary and bool(self.patch.strip())

    def numbered(self, max_chars: int) -> tuple[str, bool]:
        """The patch with each new-side line prefixed by its number, cut at ``max_chars``."""
        out: list[str] = []
        new = 0
        for line in self.patch.splitlines():
            m = _HUNK.match(line)
            if m:
                new = int(m.group(1))
                out.append(line)
            elif line.startswith(("diff --git", "index ", "--- ", "+++ ", "new file", "deleted file")):
                continue  # headers repeat what the prompt already says
            elif line.startswith("+"):
                out.append(f"{new:>5} {line}")
                new += 1
            elif line.startswith("-"):
                out.append(f"      {line}")
            elif line.startswith("\\"):
                continue
            else:
                out.append(f"{new:>5} {line}")
                new += 1
        text = "\n".join(out)
        if len(text) <= max_chars:
            return text, False
        return text[:max_chars] + "\n... (diff truncated)", True

    def nearest_line(self, line: int | None) -> int:
        """``line`` if the diff shows it, else the closest added (or shown) line; 1 when there is none."""
        shown = self.visible_lines or self.added_lines
        if line is not None and line in shown:
            return line
        pool = self.added_lines or shown
        if not pool:
            return 1
        if line is None or line < 1:
            return pool[0]
        return min(pool, key=lambda n: (abs(n - line), n))


@dataclass(slots=True)
class DiffSet:
    repo: Path
    base: str
    head: str
    base_sha: str
    head_sha: str
    merge_base: str
    files: list[FileDiff]

    @property
    def empty(self) -> bool:
        return not self.files


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = run_git(repo, *args, timeout=_TIMEOUT_S, error=InputError)
    if check and proc.returncode != 0:
        raise InputError(f"git {args[0]} failed in {repo}: {' '.join(proc.stderr.split())[:300]}")
    return proc


def check_repo(repo: Path | str) -> Path:
    """The repository's top-level directory, or InputError when ``repo`` is missing or not a git repo."""
    path = Path(repo).expanduser()
    if not path.exists():
        raise InputError(f"--repo {str(path)!r} does not exist: pass the path of a git repository")
    if not path.is_dir():
        raise InputError(f"--repo {str(path)!r} is not a directory: pass the path of a git repository")
    proc = _git(path, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise InputError(f"--repo {str(path)!r} is not a git repository (git init, or pass another path)")
    return Path(proc.stdout.strip())


def resolve_ref(repo: Path, ref: str, flag: str) -> str:
    """The commit ``ref`` names, or InputError naming the flag and the ref."""
    if not isinstance(ref, str) or not _REF.match(ref):
        raise InputError(
            f"{flag} {ref!r} is not a git ref (use a branch, tag or commit such as main, HEAD~1)"
        )
    proc = _git(
        repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise InputError(f"{flag} {ref!r} is not a known ref in {repo}: check `git branch -a` or `git log`")
    return proc.stdout.strip()


def _parse_name_status(raw: str) -> list[tuple[str, str, str | None]]:
    """``--name-status -z`` output as (status, path at head, old path)."""
    parts = raw.split("\0")
    out: list[tuple[str, str, str | None]] = []
    i = 0
    while i < len(parts) and parts[i]:
        status = parts[i][0]
        if status in ("R", "C"):
            out.append((status, parts[i + 2], parts[i + 1]))
            i += 3
        else:
            out.append((status, parts[i + 1], None))
            i += 2
    return out


def _fill(fd: FileDiff) -> None:
    new = 0
    for line in fd.patch.splitlines():
        m = _HUNK.match(line)
        if m:
            new = int(m.group(1))
        elif line.startswith(("+++ ", "--- ")):
            continue
        elif line.startswith("+"):
            fd.additions += 1
            fd.added.append((new, line[1:]))
            fd.visible_lines.append(new)
            new += 1
        elif line.startswith("-"):
            fd.deletions += 1
        elif line.startswith(" "):
            fd.visible_lines.append(new)
            new += 1
        elif line.startswith("Binary files "):
            fd.binary = True


def collect_diff(repo: Path | str, base: str, head: str = "HEAD", *, max_files: int = 50) -> DiffSet:
    """The changes on ``head`` since its merge base with ``base`` (what a pull request shows).

    Every changed file is listed; only the first ``max_files`` get their patch read.
    """
    top = check_repo(repo)
    base_sha = resolve_ref(top, base, "--base")
    head_sha = resolve_ref(top, head, "--head")
    proc = _git(top, "merge-base", base_sha, head_sha, check=False)
    if proc.returncode != 0:
        raise InputError(f"--base {base!r} and --head {head!r} share no history: there is no diff to review")
    mb = proc.stdout.strip()
    common = ("--no-color", "--find-renames")  # run_git adds --no-ext-diff --no-textconv
    listing = _git(top, "diff", *common, "--name-status", "-z", mb, head_sha).stdout
    files: list[FileDiff] = []
    for i, (status, path, old) in enumerate(_parse_name_status(listing)):
        fd = FileDiff(path=path, status=status, old_path=old)
        if i < max_files:
            paths = [old, path] if old else [path]
            fd.patch = _git(top, "diff", *common, "-U3", mb, head_sha, "--", *paths).stdout
            _fill(fd)
        files.append(fd)
    return DiffSet(top, base, head, base_sha, head_sha, mb, files)
