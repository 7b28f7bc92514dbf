"""Files outside the workspace stay out: hard links, symlinks swapped mid-read, symlink loops."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestration.test_orchestrate import plan_script
from tierwise import Session
from tierwise.testing import ChaosServer
from tierwise.tools import ToolError, Workspace

SECRET = "TOP SECRET outside the workspace"


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_text(SECRET)
    (out / "f.txt").write_text(SECRET)
    return out


def test_hard_link_to_an_outside_file_is_refused(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "ok.txt").write_text("fine")
    os.link(outside / "secret.txt", root / "linked.txt")
    ws = Workspace(root)
    with pytest.raises(ToolError, match="hard links") as err:
        ws.read("linked.txt")
    assert "\n" not in str(err.value)
    with pytest.raises(ToolError, match="hard links"):
        ws.resolve("linked.txt")  # what systems use to check a path a planner named
    assert [ws.rel(p) for p in ws.files(".")] == ["ok.txt"]
    assert ws.list(".") == "ok.txt"
    assert ws.search("SECRET") == "(no matches)"


def _loopy(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha TODO\n")
    (root / "sub" / "b.txt").write_text("beta TODO\n")
    (root / "loop_a").symlink_to("loop_b")
    (root / "loop_b").symlink_to("loop_a")
    (root / "self").symlink_to("self")
    (root / "sub" / "up").symlink_to("..")
    (root / "here").symlink_to(".")
    return root


def test_symlink_loops_are_skipped_in_walks_and_a_clear_error_on_read(tmp_path: Path) -> None:
    ws = Workspace(_loopy(tmp_path))
    assert [ws.rel(p) for p in ws.files(".")] == ["a.txt", "sub/b.txt"]
    assert ws.list(".").splitlines() == ["a.txt", "sub/"]
    assert ws.list("sub") == "sub/b.txt"
    assert ws.search("TODO").splitlines() == ["a.txt:1: alpha TODO", "sub/b.txt:1: beta TODO"]
    for path in ("loop_a", "self", "loop_a/x.txt", "sub/up/a.txt", "here/a.txt"):
        with pytest.raises(ToolError, match="symlink") as err:
            ws.read(path)
        assert "\n" not in str(err.value)
        with pytest.raises(ToolError, match="symlink"):
            ws.resolve(path)
    with pytest.raises(ToolError, match="symlink"):
        ws.list("here")


async def test_orchestrate_over_a_workspace_with_a_symlink_loop(
    chaos_toml: Path, chaos_server: ChaosServer, tmp_path: Path
) -> None:
    root = _loopy(tmp_path)
    plan = {"steps": [{"id": "look", "kind": "code_search", "tier": "mini", "instruction": "LOOK"}]}
    mini = {"model": "mini-model", "has_tools": True}
    calls = [{"name": "read_file", "arguments": {"path": "loop_a"}}]
    calls.append({"name": "list_files", "arguments": {"path": "."}})
    chaos_server.set_script(
        plan_script(
            plan=plan,
            extra=[
                {"times": 1, "match": mini, "reply": {"tool_calls": calls}},
                {"times": 1, "match": mini, "reply": {"text": "two files and a loop"}},
            ],
        )
    )
    async with Session(chaos_toml) as s:
        result = await s.orchestrate("What is in the workspace?", workspace=root, budget=1.0)
    assert [st["status"] for st in result.steps] == ["ok"]
    last = [r for r in chaos_server.requests("/v1/chat/completions") if r["model"] == "mini-model"][-1]
    tool_msgs = [m["content"] for m in last["body"]["messages"] if m["role"] == "tool"]
    assert "error: 'loop_a' is or goes through a symlink" in tool_msgs[0]
    assert "a.txt\nsub/" in tool_msgs[1]


# Run as another process (as an attacker would), so the swaps are truly concurrent with our reads.
_FLIPPER = r"""
import os, sys
root, outside, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.chdir(root)
for i in range(n // 2):
    os.symlink(os.path.join(outside, "secret.txt"), f".l{i}")
    os.replace(f".l{i}", "f")
    os.rename("d_dir", "d")
    os.rename("d", "d_dir")
    with open(f".f{i}", "w") as fh:
        fh.write("inside")
    os.replace(f".f{i}", "f")
    os.rename("d_link", "d")
    os.rename("d", "d_link")
"""


@pytest.fixture()
def fast_tmp(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs when there is one: renames on a loaded disk are 10x slower."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(dir=shm, prefix="tierwise-race-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_symlinks_swapped_during_reads_never_leak_an_outside_file(fast_tmp: Path) -> None:
    """Another process flips ``f`` between an inside file and a symlink to an outside one, and ``d``
    between an inside directory and a symlink to an outside one, 10,000 times, while we read both."""
    outside = fast_tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (outside / "f.txt").write_text(SECRET)
    root = fast_tmp / "ws"
    root.mkdir()
    (root / "d_dir").mkdir()
    (root / "d_dir" / "f.txt").write_text("inside")
    (root / "d_link").symlink_to(outside)
    (root / "f").write_text("inside")
    ws = Workspace(root)
    flips = 10_000
    proc = subprocess.Popen([sys.executable, "-c", _FLIPPER, str(root), str(outside), str(flips)])
    reads = leaks = refused = 0
    try:
        while proc.poll() is None:
            for path in ("f", "d/f.txt"):
                try:
                    text = ws.read(path)
                except ToolError:  # a symlink at that moment, or nothing there: refused, fine
                    refused += 1
                    continue
                reads += 1
                leaks += SECRET in text
    finally:
        proc.kill()
        proc.wait()
    print(f"race: {reads} reads returned content, {refused} refused, {leaks} leaks over {flips} flips")
    assert proc.returncode == 0
    assert leaks == 0
    assert reads > 100  # reads really succeeded while the swaps went on
