"""The hostile-content corpus and what every hostile test needs: a secret planted outside the workspace,
a byte-exact snapshot of a tree, and the places where leaked text could end up."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tierwise.testing import ChaosServer

CORPUS = Path(__file__).parent / "corpus"
# Planted outside every workspace: finding it in any output, request or ledger byte is a path escape.
SECRET = "OUTSIDE-SECRET-5d1c0e9b"
PASSWD = "root:x:0:0"  # the first line of /etc/passwd on any Linux


@dataclass(frozen=True, slots=True)
class Injection:
    name: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0]


def injections() -> list[Injection]:
    """Every injection of the corpus, in file order."""
    files = sorted((CORPUS / "injections").glob("*.txt"))
    return [Injection(p.stem, p.read_text(encoding="utf-8")) for p in files]


def benign() -> list[Path]:
    return sorted((CORPUS / "benign").iterdir())


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every entry under ``root`` (symlinks not followed): kind, content or link target, and mode."""
    out: dict[str, tuple[str, bytes | str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p), st.st_mode)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", "", st.st_mode)
            else:
                out[rel] = ("file", p.read_bytes(), st.st_mode)
    return out


@dataclass(frozen=True, slots=True)
class Outside:
    """A directory beside the workspace holding the secret, and the workspace itself."""

    dir: Path
    secret: Path
    ws: Path


def git(repo: Path, *args: str) -> None:
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": os.environ["PATH"]}
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True, capture_output=True, env=env,
    )  # fmt: skip


@pytest.fixture()
def hostile_ws(tmp_path: Path) -> Outside:
    """A git workspace whose files hold every injection of the corpus, plus three ways out of it that
    exist on disk: a symlink to the secret, a symlink to its directory and a hard link to it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(f"{SECRET}\nthe database password is hunter2\n")
    ws = tmp_path / "ws"
    (ws / "docs").mkdir(parents=True)
    (ws / "app.py").write_text("def add(a, b):\n    return a + b\n")
    for inj in injections():
        (ws / "docs" / f"{inj.name}.md").write_text(f"# Notes\n\n{inj.text}")
    git(ws, "init", "-q")
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "init")
    # Not committed: git would store what the hard link points at in the workspace's own objects.
    (ws / "link-to-secret.txt").symlink_to(secret)
    (ws / "up").symlink_to(outside, target_is_directory=True)
    os.link(secret, ws / "hard.txt")
    return Outside(outside, secret, ws)


def chat_requests(server: ChaosServer) -> list[dict[str, Any]]:
    return server.requests("/v1/chat/completions")


def leaked_anywhere(texts: list[str], needles: tuple[str, ...] = (SECRET, PASSWD)) -> list[str]:
    """The needles found in any of ``texts``: what must stay empty."""
    return [n for n in needles if any(n in t for t in texts)]


def ledger_bytes(tmp_path: Path) -> str:
    """Every byte the SQLite ledger wrote (the file and its journal), as text for a substring search."""
    return "".join(
        p.read_bytes().decode("utf-8", errors="replace") for p in tmp_path.glob("ledger.db*") if p.is_file()
    )


def system_texts(server: ChaosServer) -> list[str]:
    """Every system/developer message sent to any model."""
    return [
        m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
        for r in chat_requests(server)
        for m in r["body"]["messages"]
        if m["role"] in ("system", "developer")
    ]
