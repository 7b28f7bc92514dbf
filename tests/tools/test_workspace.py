"""Workspace tools stay inside their root: no '..', no absolute paths outside, no escaping symlinks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tierwise import InputError
from tierwise.tools import ToolError, Workspace, workspace_tools


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def main():\n    # TODO: handle errors\n    return 1\n")
    (root / "README.md").write_text("# demo\n")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "escape_dir").symlink_to(tmp_path)
    return Workspace(root)


def test_list_read_search(ws: Workspace) -> None:
    assert ws.list(".").splitlines() == ["README.md", "src/"]  # escaping symlinks are not listed
    assert "TODO" in ws.read("src/app.py")
    assert ws.search("TODO") == "src/app.py:2:     # TODO: handle errors"
    assert ws.search("nothing-here") == "(no matches)"


@pytest.mark.parametrize(
    "path", ["../secret.txt", "src/../../secret.txt", "/etc/passwd", "escape", "escape_dir/secret.txt"]
)
def test_paths_outside_the_root_are_refused(ws: Workspace, path: str) -> None:
    with pytest.raises(ToolError, match=r"outside the workspace|contains '\.\.'"):
        ws.read(path)


def test_absolute_path_inside_the_root_is_fine(ws: Workspace) -> None:
    assert ws.read(str(ws.root / "README.md")) == "# demo\n"


def test_search_does_not_follow_escaping_symlinks(ws: Workspace) -> None:
    assert ws.search("outside") == "(no matches)"


def test_missing_workspace_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        Workspace(tmp_path / "missing")


def test_tools_declare_reads_and_no_writes(ws: Workspace) -> None:
    tools = workspace_tools(ws)
    assert {t.name for t in tools} == {"list_files", "read_file", "search"}
    assert all(t.reads and not t.writes for t in tools)


def test_git_log_and_diff(ws: Workspace) -> None:
    env = {
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@b",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@b",
        "PATH": "/usr/bin:/bin",
    }
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "first commit"]):
        subprocess.run(["git", "-C", str(ws.root), *cmd], check=True, env=env)
    (ws.root / "README.md").write_text("# demo\nchanged\n")
    tools = {t.name: t for t in workspace_tools(ws)}
    assert "first commit" in tools["git_log"].run({"path": "."})
    assert "+changed" in tools["git_diff"].run({"path": "README.md"})
    with pytest.raises(ToolError, match="plain git revision"):
        tools["git_diff"].run({"path": ".", "rev": "--output=/tmp/x"})
    with pytest.raises(ToolError, match=r"contains '\.\.'"):
        tools["git_log"].run({"path": "../"})
