"""Open and walk files under a root directory without ever following a symlink.

Every component of a path is opened relative to its parent's descriptor (``openat``-style, ``dir_fd=``)
with ``O_NOFOLLOW``, so a symlink anywhere in the path is refused by the kernel at the moment of the open,
not by an earlier check a racing process could invalidate. A regular file with more than one hard link is
refused too: its other name may be a file outside the root. Walks skip symlinks (loops included) and such
files, and stop at a fixed depth, so no workspace can make them crash or run away.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence

from tierwise.errors import ToolError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO or a device must not hang; it is harmless on a regular file.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
_SYMLINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK})  # EMLINK: what FreeBSD says for O_NOFOLLOW
MAX_DEPTH = 64


def symlink_refusal(shown: str, at: str) -> ToolError:
    return ToolError(
        f"{shown!r} is or goes through a symlink ({at!r}), which could lead outside the workspace: "
        "workspace tools do not follow symlinks; name the real file instead"
    )


def _refusal(exc: OSError, shown: str, at: str) -> ToolError:
    if exc.errno in _SYMLINK_ERRNOS:
        return symlink_refusal(shown, at)
    if exc.errno == errno.ENOENT:
        return ToolError(f"{shown!r} does not exist in the workspace; list a directory to see what exists")
    if exc.errno == errno.ENOTDIR:
        return ToolError(f"{shown!r} is not a directory in the workspace ({at!r} is a file)")
    if exc.errno == errno.EACCES:
        return ToolError(f"{shown!r} cannot be read: permission denied")
    return ToolError(f"{shown!r} cannot be opened: {exc.strerror or exc}")


def open_dir(root: os.PathLike[str] | str, parts: Sequence[str], shown: str) -> int:
    """A descriptor of the directory ``root/parts...``, each component opened with no-follow."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for i, name in enumerate(parts):
        try:
            nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ENOTDIR and _is_symlink(fd, name):
                exc = OSError(errno.ELOOP, "symlink")  # Linux says ENOTDIR for a symlink with O_DIRECTORY
            os.close(fd)
            raise _refusal(exc, shown, "/".join(parts[: i + 1])) from None
        os.close(fd)
        fd = nxt
    return fd


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_at(dir_fd: int, name: str, shown: str) -> int:
    """A descriptor of the regular, single-link file ``name`` in ``dir_fd`` (never through a symlink)."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(exc, shown, shown) from None
    try:
        check_plain_file(os.fstat(fd), shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_plain_file(st: os.stat_result, shown: str) -> None:
    """ToolError unless ``st`` (an lstat or fstat) is a regular file with a single link."""
    if stat.S_ISLNK(st.st_mode):
        raise symlink_refusal(shown, shown)
    if stat.S_ISDIR(st.st_mode):
        raise ToolError(f"{shown!r} is a directory, not a file; list it to see its files")
    if not stat.S_ISREG(st.st_mode):
        raise ToolError(f"{shown!r} is not a regular file (a device, socket or pipe): it cannot be read")
    if st.st_nlink > 1:
        raise ToolError(
            f"{shown!r} has {st.st_nlink} hard links, and another link may be a file outside the "
            "workspace: workspace tools read only files with a single link"
        )


def lstat_at(dir_fd: int, name: str, shown: str) -> os.stat_result:
    """``name``'s own status in ``dir_fd`` (a symlink is reported, not followed)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise _refusal(exc, shown, shown) from None


def open_file(root: os.PathLike[str] | str, parts: Sequence[str], shown: str) -> int:
    """A descriptor of the regular file ``root/parts...``; ToolError for anything else."""
    if not parts:
        raise ToolError(f"{shown!r} is a directory, not a file; list it to see its files")
    dir_fd = open_dir(root, parts[:-1], shown)
    try:
        return open_at(dir_fd, parts[-1], shown)
    finally:
        os.close(dir_fd)


def read_fd(fd: int, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` bytes from ``fd``, which it closes."""
    with os.fdopen(fd, "rb") as fh:
        return fh.read(max_bytes)


def entries(dir_fd: int) -> list[tuple[str, bool]]:
    """(name, is a directory) of the plain entries of ``dir_fd``, sorted: no symlinks, no multi-link files,
    nothing but directories and regular files."""
    out: list[tuple[str, bool]] = []
    try:
        with os.scandir(dir_fd) as it:
            listed = list(it)
    except OSError:
        return out
    for entry in listed:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # gone since the listing
        if stat.S_ISDIR(st.st_mode):
            out.append((entry.name, True))
        elif stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            out.append((entry.name, False))
    return sorted(out)


def walk(
    dir_fd: int, prefix: tuple[str, ...], skip: frozenset[str], depth: int = 0
) -> Iterator[tuple[tuple[str, ...], int, str]]:
    """(path parts, parent descriptor, name) of every plain file under ``dir_fd``: a directory's files in
    name order, then its subdirectories; the descriptor is valid only until the next item."""
    listed = entries(dir_fd)
    for name, is_dir in listed:
        if not is_dir:
            yield (*prefix, name), dir_fd, name
    if depth >= MAX_DEPTH:
        return
    for name, is_dir in listed:
        if not is_dir or name in skip:
            continue
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError:
            continue  # swapped for a symlink or removed since the listing
        try:
            yield from walk(sub, (*prefix, name), skip, depth + 1)
        finally:
            os.close(sub)
