"""A repository under review cannot make our git calls run its programs or read files outside it.

The fixture's ``.git/config`` names a script (that only appends to a marker file) as every program git
could run on a read-only command: fsmonitor, hooks, external diff, textconv, clean/smudge/process filters
(one of them defined in a file the config includes), pagers, gpg for ``log.showSignature``, ssh. Each
git-using function of tierwise then runs on it: the marker must never appear.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tierwise.errors import InputError
from tierwise.systems.coding_assistant.repo import check_inputs, git_apply_check
from tierwise.systems.pr_review.git import check_repo, collect_diff, resolve_ref
from tierwise.tools import ToolError, Workspace, workspace_tools

_ENV = {
    "GIT_AUTHOR_NAME": "a",
    "GIT_AUTHOR_EMAIL": "a@b",
    "GIT_COMMITTER_NAME": "a",
    "GIT_COMMITTER_EMAIL": "a@b",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "HOME": "/dev/null",
    "PATH": "/usr/bin:/bin",
}


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, env=_ENV, capture_output=True, text=True, input=stdin
    ).stdout.strip()


@pytest.fixture()
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """(repository, marker file): a repo whose config would run ``evil.sh`` from every git hook point."""
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.sh"
    evil.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\ncat\n')
    evil.chmod(evil.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("post-index-change", "pre-commit", "post-checkout", "reference-transaction"):
        (hooks / hook).symlink_to(evil)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("one\ntwo\nthree\n")
    (repo / "b.p").write_text("bee\n")
    (repo / "c.inc").write_text("sea\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "a.txt").write_text("one\ntwo changed\nthree\n")
    (repo / "b.p").write_text("bee changed\n")
    git(repo, "commit", "-qam", "change")
    # a signed-looking commit on top, so log.showSignature has a signature to hand to gpg.program
    (repo / "d.txt").write_text("dee\n")
    git(repo, "add", "d.txt")
    tree = git(repo, "write-tree")
    head = git(repo, "rev-parse", "HEAD")
    body = (
        f"tree {tree}\nparent {head}\nauthor a <a@b> 1700000000 +0000\ncommitter a <a@b> 1700000000 +0000\n"
        "gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nsigned\n"
    )
    signed = git(repo, "hash-object", "-t", "commit", "-w", "--stdin", stdin=body)
    git(repo, "update-ref", "refs/heads/feature", signed)
    # Only now the hostile parts, so that building the fixture ran none of them.
    (repo / ".gitattributes").write_text("*.txt filter=evil diff=x\n*.p filter=evilp\n*.inc filter=inc\n")
    (tmp_path / "included.cfg").write_text(f'[filter "inc"]\n\tclean = {evil} inc-clean\n')
    with (repo / ".git" / "config").open("a") as fh:
        fh.write(
            f"[core]\n\tfsmonitor = {evil}\n\thooksPath = {hooks}\n\tpager = {evil} pager\n"
            f"\tsshCommand = {evil} ssh\n\tattributesFile = {repo / '.gitattributes'}\n"
            f"[diff]\n\texternal = {evil} external\n"
            f'[diff "x"]\n\ttextconv = {evil} textconv\n\tcommand = {evil} diffcmd\n'
            f'[filter "evil"]\n\tclean = {evil} clean\n\tsmudge = {evil} smudge\n\trequired = true\n'
            f'[filter "evilp"]\n\tprocess = {evil} process\n'
            f"[log]\n\tshowSignature = true\n[gpg]\n\tprogram = {evil}\n"
            f"[pager]\n\tlog = {evil} pager-log\n\tdiff = {evil} pager-diff\n"
            f"[include]\n\tpath = {tmp_path / 'included.cfg'}\n"
        )
    # dirty worktree files, so a worktree diff has to run them through their clean filters
    (repo / "a.txt").write_text("one\ntwo changed\nthree\nfour\n")
    (repo / "b.p").write_text("bee changed again\n")
    (repo / "c.inc").write_text("sea changed\n")
    future = os.stat(repo / "a.txt").st_mtime + 5
    for name in ("a.txt", "b.p", "c.inc"):
        os.utime(repo / name, (future, future))
    assert not marker.exists()
    return repo, marker


def test_the_fixture_is_really_hostile(hostile: tuple[Path, Path]) -> None:
    """Plain git on the fixture runs the script: the other tests would pass vacuously otherwise."""
    repo, marker = hostile
    subprocess.run(["git", "-C", str(repo), "diff"], env=_ENV, capture_output=True, check=False)
    subprocess.run(["git", "-C", str(repo), "log", "-1"], env=_ENV, capture_output=True, check=False)
    ran = marker.read_text()
    assert "clean" in ran and "--verify" in ran and "external" in ran


def test_workspace_git_tools_run_nothing_the_repo_names(hostile: tuple[Path, Path]) -> None:
    repo, marker = hostile
    tools = {t.name: t for t in workspace_tools(Workspace(repo))}
    log = tools["git_log"].run({"path": "."})
    assert "signed" in log and "change" in log and "first" in log
    diff = tools["git_diff"].run({"path": "."})
    assert "+four" in diff and "+bee changed again" in diff and "+sea changed" in diff
    assert "+two changed" in tools["git_diff"].run({"path": "a.txt", "rev": "main"})
    assert not marker.exists(), marker.read_text()


def test_pr_review_diff_runs_nothing_the_repo_names(hostile: tuple[Path, Path]) -> None:
    repo, marker = hostile
    assert check_repo(repo) == repo
    assert resolve_ref(repo, "main", "--base")
    diff = collect_diff(repo, "main", "feature")
    assert sorted(f.path for f in diff.files) == ["a.txt", "b.p", "d.txt"]
    assert any("+two changed" in f.patch for f in diff.files)
    assert not marker.exists(), marker.read_text()


def test_coding_assistant_git_runs_nothing_the_repo_names(hostile: tuple[Path, Path]) -> None:
    repo, marker = hostile
    check_inputs(repo, "where is four added?")
    patch = "--- a/a.txt\n+++ b/a.txt\n@@ -1,4 +1,5 @@\n one\n two changed\n three\n four\n+five\n"
    assert git_apply_check(repo, patch) is None
    assert git_apply_check(repo, patch.replace("four", "nine")) is not None
    assert not marker.exists(), marker.read_text()


def test_core_worktree_cannot_point_git_outside_the_workspace(tmp_path: Path) -> None:
    """``core.worktree`` in the repo's config would make ``git diff`` show files from elsewhere."""
    repo = tmp_path / "repo"
    repo.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("TOP SECRET\n")
    git(repo, "init", "-q")
    (repo / "notes.txt").write_text("placeholder\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    git(repo, "config", "core.worktree", str(outside))
    tools = {t.name: t for t in workspace_tools(Workspace(repo))}
    assert "TOP SECRET" not in tools["git_diff"].run({"path": "."})
    assert git_apply_check(repo, "--- a/notes.txt\n+++ b/notes.txt\n@@ -1 +1 @@\n-placeholder\n+x\n") is None


def test_missing_repo_is_still_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a git repository"):
        check_repo(tmp_path)


def test_filter_names_git_cannot_override_are_refused_not_run(tmp_path: Path) -> None:
    """``-c`` splits at the first '=': a driver named ``a=b`` cannot be blanked, so git is not run at all;
    a name that is not UTF-8 is blanked byte for byte."""
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.sh"
    evil.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\ncat\n')
    evil.chmod(0o755)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    (repo / "b.bin").write_text("two\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    (repo / ".gitattributes").write_bytes(b"*.bin filter=\xff\xfe\n")
    with (repo / ".git" / "config").open("ab") as fh:
        fh.write(b'[filter "\xff\xfe"]\n\tclean = ' + str(evil).encode() + b" bytes\n")
    (repo / "b.bin").write_text("two changed\n")
    tools = {t.name: t for t in workspace_tools(Workspace(repo))}
    assert "+two changed" in tools["git_diff"].run({"path": "."})
    assert not marker.exists(), marker.read_text()
    (repo / ".gitattributes").write_text("*.txt filter=a=b\n")
    with (repo / ".git" / "config").open("a") as fh:
        fh.write(f'[filter "a=b"]\n\tclean = {evil} eq\n')
    (repo / "a.txt").write_text("one changed\n")
    with pytest.raises(ToolError, match="cannot be told to skip"):
        tools["git_diff"].run({"path": "."})
    assert not marker.exists(), marker.read_text()
