"""Workspace files a subagent may touch: list, read and grep, confined to one root directory.

Every path a model names is resolved (symlinks followed) and must stay under the root; ``..`` is
refused outright so that a rejected path never depends on what happens to exist on disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tierwise.core import ToolSpec
from tierwise.errors import InputError, ToolError

_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".tierwise"})


@dataclass(frozen=True, slots=True)
class Tool:
    """A function a subagent may call, with what it reads and writes declared up front."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[Mapping[str, Any]], str]
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


@dataclass(frozen=True, slots=True)
class Workspace:
    """A directory tree subagents may read. Immutable: nothing a model says can widen it."""

    root: Path
    max_read_bytes: int = 20_000
    max_list: int = 200
    max_hits: int = 50
    _real: Path = field(init=False, repr=False)

    def __post_init__(self) -> None:
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise InputError(
                f"workspace {str(root)!r} does not exist or is not a directory: pass a directory"
            )
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "_real", root.resolve(strict=True))

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` (relative to the root), or ToolError if it would leave the root."""
        raw = str(path).strip() or "."
        if "\x00" in raw:
            raise ToolError(f"path {raw!r} contains a NUL byte")
        if ".." in PurePosixPath(raw.replace("\\", "/")).parts:
            raise ToolError(f"path {raw!r} contains '..': paths must stay inside the workspace")
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self._real / candidate
        real = candidate.resolve(strict=False)
        if real != self._real and not real.is_relative_to(self._real):
            raise ToolError(f"path {raw!r} is outside the workspace; use paths relative to its root")
        return real

    def rel(self, real: Path) -> str:
        return real.relative_to(self._real).as_posix() or "."

    def list(self, path: str = ".") -> str:
        target = self.resolve(path)
        if not target.is_dir():
            raise ToolError(f"{path!r} is not a directory in the workspace")
        entries: list[str] = []
        for child in sorted(target.iterdir()):
            if child.name in _SKIP_DIRS:
                continue
            try:
                inside = self.resolve(str(child.relative_to(self._real)))
            except (ToolError, ValueError):
                continue  # a symlink pointing outside: not part of the workspace
            entries.append(self.rel(child) + ("/" if inside.is_dir() else ""))
            if len(entries) >= self.max_list:
                entries.append(f"... (truncated at {self.max_list} entries)")
                break
        return "\n".join(entries) or "(empty directory)"

    def read(self, path: str) -> str:
        target = self.resolve(path)
        if not target.is_file():
            raise ToolError(f"{path!r} is not a file in the workspace; list a directory to see what exists")
        with target.open("rb") as fh:
            data = fh.read(self.max_read_bytes + 1)
        text = data[: self.max_read_bytes].decode("utf-8", errors="replace")
        if len(data) > self.max_read_bytes:
            text += f"\n... (truncated at {self.max_read_bytes} bytes)"
        return text

    def files(self, path: str = ".") -> list[Path]:
        """Regular files under ``path`` (inside the root, skipping VCS and cache directories)."""
        start = self.resolve(path)
        if start.is_file():
            return [start]
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                p = Path(dirpath) / name
                real = p.resolve()
                if real.is_file() and (real == self._real or real.is_relative_to(self._real)):
                    found.append(p)
        return found

    def search(self, pattern: str, path: str = ".") -> str:
        """grep: lines matching a regular expression, as ``file:line: text``."""
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
        hits: list[str] = []
        for file in self.files(path):
            try:
                with file.open("r", encoding="utf-8", errors="replace") as fh:
                    for n, line in enumerate(fh, 1):
                        if rx.search(line):
                            hits.append(f"{self.rel(file)}:{n}: {line.rstrip()[:200]}")
                            if len(hits) >= self.max_hits:
                                return "\n".join([*hits, f"... (truncated at {self.max_hits} hits)"])
            except OSError:
                continue
        return "\n".join(hits) or "(no matches)"

    def tools(self) -> tuple[Tool, ...]:
        """list / read / search over this workspace."""
        where = f"workspace:{self._real}"
        return (
            Tool(
                "list_files",
                "List files and directories under a workspace directory (relative path, '.' for the root).",
                _obj({"path": {"type": "string"}}, ["path"]),
                lambda a: self.list(str(a.get("path", "."))),
                reads=(where,),
            ),
            Tool(
                "read_file",
                "Read a text file of the workspace (relative path).",
                _obj({"path": {"type": "string"}}, ["path"]),
                lambda a: self.read(str(a.get("path", ""))),
                reads=(where,),
            ),
            Tool(
                "search",
                "Search workspace files for a regular expression; returns file:line: text.",
                _obj({"pattern": {"type": "string"}, "path": {"type": "string"}}, ["pattern", "path"]),
                lambda a: self.search(str(a.get("pattern", "")), str(a.get("path", ".") or ".")),
                reads=(where,),
            ),
        )
