"""Workspace files a subagent may list, read and grep, confined to one root directory.

A path a model names is checked before the disk is touched (no ``..``, no absolute path outside the
root), then opened component by component relative to a directory descriptor with no-follow
(:mod:`tierwise.tools.confined`). The symlink policy is to refuse: reads refuse a path that is or goes
through a symlink, even one pointing inside the root, and regular files with more than one hard link;
listings, walks and searches skip both, so a symlink loop or a swapped symlink can neither crash them nor
leak a file from outside. A search is a model-written regular expression: it is capped in size and runs
under a total time limit (the ``regex`` engine stops a match after a timeout, which it counts in CPU time,
and releases the GIL while matching), so a pattern that backtracks catastrophically ends in a ToolError
instead of freezing the caller; subagents also run tools in a thread, off the event loop.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import regex

from tierwise.core import ToolSpec
from tierwise.errors import InputError, ToolError
from tierwise.tools import confined

_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".tierwise"})
MAX_PATTERN_CHARS = 500
MAX_SEARCH_BYTES = 2_000_000  # larger files are generated or data: searching them costs the time limit


def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """A model's regular expression, compiled, or ToolError when it is too long or invalid."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ToolError(
            f"the search pattern has {len(pattern)} characters (at most {MAX_PATTERN_CHARS}): search for "
            "a shorter one"
        )
    try:
        return regex.compile(pattern)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise ToolError(f"pattern {pattern[:100]!r} is not a valid regular expression: {exc}") from None


def _matches(rx: regex.Pattern[str], line: str, deadline: float, pattern: str, limit_s: float) -> bool:
    left = deadline - time.monotonic()
    try:
        if left <= 0:
            raise TimeoutError
        # concurrent=True releases the GIL while matching, so other threads (the event loop) keep running
        return rx.search(line, timeout=left, concurrent=True) is not None
    except TimeoutError:
        raise ToolError(
            f"searching for {pattern[:80]!r} took longer than {limit_s:g} s (a pattern that backtracks, or "
            "too much text): use a simpler pattern or a narrower path"
        ) from None


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
    search_timeout_s: float = 2.0
    _real: Path = field(init=False, repr=False)

    def __post_init__(self) -> None:
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise InputError(
                f"workspace {str(root)!r} does not exist or is not a directory: pass a directory"
            )
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "_real", root.resolve(strict=True))

    def _parts(self, path: str) -> tuple[str, ...]:
        """``path`` as components under the root, checked without touching the disk."""
        raw = str(path).strip() or "."
        if "\x00" in raw:
            raise ToolError(f"path {raw!r} contains a NUL byte")
        if ".." in PurePosixPath(raw.replace("\\", "/")).parts:
            raise ToolError(f"path {raw!r} contains '..': paths must stay inside the workspace")
        p = PurePosixPath(raw)
        if p.is_absolute():
            # the root as resolved, or as the user spelled it (it may itself be a symlink to the real one)
            for base in (PurePosixPath(self._real), PurePosixPath(self.root.absolute())):
                if p.is_relative_to(base):
                    return p.relative_to(base).parts
            raise ToolError(f"path {raw!r} is outside the workspace; use paths relative to its root")
        return p.parts

    def resolve(self, path: str) -> Path:
        """The path of ``path`` under the root, or ToolError if it would leave the root, goes through a
        symlink or names a file no read would open (a hard link, a device). What it names may not exist;
        reads re-check every component as they open it."""
        parts = self._parts(path)
        for i in range(len(parts)):
            try:
                st = os.lstat(self._real.joinpath(*parts[: i + 1]))
            except OSError:
                break  # missing or unreadable: whoever opens it finds out
            if stat.S_ISLNK(st.st_mode):
                raise confined.symlink_refusal(str(path).strip(), "/".join(parts[: i + 1]))
            if i == len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                confined.check_plain_file(st, str(path).strip())  # e.g. a hard link: refused here too
        return self._real.joinpath(*parts)

    def rel(self, real: Path) -> str:
        return real.relative_to(self._real).as_posix() or "."

    def _shown(self, parts: tuple[str, ...]) -> str:
        return "/".join(parts) or "."

    def list(self, path: str = ".") -> str:
        parts = self._parts(path)
        fd = confined.open_dir(self._real, parts, self._shown(parts))
        try:
            listed = confined.entries(fd)
        finally:
            os.close(fd)
        entries: list[str] = []
        for name, is_dir in listed:
            if name in _SKIP_DIRS:
                continue
            entries.append("/".join((*parts, name)) + ("/" if is_dir else ""))
            if len(entries) >= self.max_list:
                entries.append(f"... (truncated at {self.max_list} entries)")
                break
        return "\n".join(entries) or "(empty directory)"

    def read_bytes(self, path: str, max_bytes: int) -> bytes:
        """Up to ``max_bytes + 1`` bytes of a workspace file (one more than asked shows it was cut), opened
        component by component with no-follow: never through a symlink, never a hard-linked file."""
        parts = self._parts(path)
        fd = confined.open_file(self._real, parts, self._shown(parts))
        return confined.read_fd(fd, max_bytes + 1)

    def read(self, path: str) -> str:
        data = self.read_bytes(path, self.max_read_bytes)
        text = data[: self.max_read_bytes].decode("utf-8", errors="replace")
        if len(data) > self.max_read_bytes:
            text += f"\n... (truncated at {self.max_read_bytes} bytes)"
        return text

    def _walk(self, path: str) -> Iterator[tuple[tuple[str, ...], int, str]]:
        """(parts, parent descriptor, name) of each plain file under ``path``, or of ``path`` itself."""
        parts = self._parts(path)
        shown = self._shown(parts)
        if parts:
            parent = confined.open_dir(self._real, parts[:-1], shown)
            try:
                st = confined.lstat_at(parent, parts[-1], shown)
                if not stat.S_ISDIR(st.st_mode):
                    confined.check_plain_file(st, shown)
                    yield parts, parent, parts[-1]
                    return
            finally:
                os.close(parent)
        fd = confined.open_dir(self._real, parts, shown)
        try:
            yield from confined.walk(fd, parts, _SKIP_DIRS)
        finally:
            os.close(fd)

    def files(self, path: str = ".") -> list[Path]:
        """Regular files under ``path`` (inside the root, skipping VCS and cache directories, symlinks and
        hard-linked files)."""
        return [self._real.joinpath(*parts) for parts, _, _ in self._walk(path)]

    def search(self, pattern: str, path: str = ".") -> str:
        """grep: lines matching a regular expression, as ``file:line: text``, within a time limit."""
        rx = compile_pattern(pattern)
        deadline = time.monotonic() + self.search_timeout_s
        hits: list[str] = []
        for parts, dir_fd, name in self._walk(path):
            try:
                fd = confined.open_at(dir_fd, name, self._shown(parts))
            except ToolError:
                continue
            with open(fd, encoding="utf-8", errors="replace") as fh:
                if os.fstat(fd).st_size > MAX_SEARCH_BYTES:
                    continue  # generated or data: not worth the time
                try:
                    for n, line in enumerate(fh, 1):
                        if _matches(rx, line, deadline, pattern, self.search_timeout_s):
                            hits.append(f"{'/'.join(parts)}:{n}: {line.rstrip()[:200]}")
                            if len(hits) >= self.max_hits:
                                return "\n".join([*hits, f"... (truncated at {self.max_hits} hits)"])
                except OSError:
                    continue  # unreadable (an I/O error): the other files still count
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
