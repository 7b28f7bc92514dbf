"""The one way tierwise runs git: on a repository whose own configuration may be hostile.

A repository's ``.git/config`` (and whatever it includes) can name programs git runs on its own:
``core.fsmonitor``, hooks, ``diff.external`` and textconv drivers, pagers, ``gpg.program`` when
``log.showSignature`` is on, clean/smudge/process filters, and transports for lazy fetches of a partial
clone. So every git subprocess goes through :func:`run_git`, which

- runs with a scrubbed environment: no ``GIT_*`` from the parent, no system or global config, no HOME,
  no terminal prompts, no lazy fetch, a minimal PATH;
- overrides each of those keys on the command line (``-c`` wins over repository config for the same key);
- blanks every filter driver the repository's config defines (their names are free-form, so they are
  read first with ``git config``, which runs nothing), because ``git diff`` and ``git apply`` run clean
  filters on worktree files;
- adds ``--no-ext-diff --no-textconv`` to ``diff``;
- with ``worktree=True``, pins ``GIT_DIR``/``GIT_WORK_TREE`` to the directory given, so a hostile
  ``core.worktree`` cannot make git read files outside it, and git never looks for a repository above it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tierwise.errors import TierwiseError, ToolError

_PATH = "/usr/local/bin:/usr/bin:/bin"

# Keys a repository could set to make a read-only command run a program (or read a file outside it).
_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.pager", "cat"),
    ("core.sshCommand", "false"),
    ("core.gitProxy", ""),
    ("core.askPass", "false"),
    ("core.editor", "false"),
    ("core.attributesFile", "/dev/null"),
    ("core.excludesFile", "/dev/null"),
    ("diff.external", ""),
    ("log.showSignature", "false"),
    ("log.mailmap", "false"),
    ("gpg.program", "false"),
    ("gpg.openpgp.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("credential.helper", ""),
    ("protocol.allow", "never"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("color.ui", "false"),
    ("core.quotePath", "false"),
)
_FILTER_KEYS = ("clean", "smudge", "process")


def git_binary(error: type[TierwiseError] = ToolError) -> str:
    """The user's git (found on their PATH, which is theirs to trust), or ``error`` when there is none."""
    git = shutil.which("git") or shutil.which("git", path=_PATH)
    if git is None:
        raise error("git is not installed on this machine: install git")
    return git


def _env(git: str, repo: Path, worktree: bool) -> dict[str, str]:
    env = {
        "PATH": f"{Path(git).parent}:{_PATH}",
        "HOME": "/dev/null",  # no ~/.gitconfig, ~/.config/git/*: git skips paths under a non-directory
        "XDG_CONFIG_HOME": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",  # read-only commands must not rewrite the index
        "GIT_NO_LAZY_FETCH": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "LC_ALL": "C",
    }
    if worktree:
        env["GIT_DIR"] = str(repo / ".git")
        env["GIT_WORK_TREE"] = str(repo)
    return env


def _filter_names(
    git: str, repo: Path, env: dict[str, str], timeout: float, error: type[TierwiseError]
) -> list[str]:
    """Names of the filter drivers the repository's config defines (``filter.<name>.<key>``). Fails
    closed: a name that cannot be overridden, or a config that cannot be read, is an ``error``."""
    cmd = [git, "--no-pager", "-C", str(repo), "config", "-z", "--name-only", "--get-regexp", "^filter[.]"]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise error(f"git config took longer than {timeout:g} s in {repo}") from None
    if proc.returncode not in (0, 1):  # 1: no filter defined
        why = " ".join(os.fsdecode(proc.stderr).split())[:300]
        raise error(f"git cannot read the configuration of {repo}: {why}")
    names = set()
    for raw in proc.stdout.split(b"\0"):
        key = os.fsdecode(raw)  # surrogateescape: any bytes come back unchanged in argv
        # the subsection may hold dots; the variable is after the last one
        if key.startswith("filter.") and key.count(".") >= 2:
            names.add(key[len("filter.") : key.rindex(".")])
    for name in names:
        if "=" in name or "\n" in name:  # `-c key=value` splits at the first '=': no override possible
            raise error(
                f"the repository in {repo} defines a filter driver named {name!r}, which git cannot be "
                "told to skip: tierwise does not run git on it"
            )
    return sorted(names)


def git_args(
    git: str,
    repo: Path,
    env: dict[str, str],
    args: tuple[str, ...],
    timeout: float,
    error: type[TierwiseError] = ToolError,
) -> list[str]:
    """The full argv: git, the overrides, the filter blanks, then ``args`` (with the diff hardening)."""
    cmd = [git, "--no-pager", "-C", str(repo)]
    for key, value in _OVERRIDES:
        cmd += ["-c", f"{key}={value}"]
    for name in _filter_names(git, repo, env, timeout, error):
        cmd += [x for k in _FILTER_KEYS for x in ("-c", f"filter.{name}.{k}=")]
        cmd += ["-c", f"filter.{name}.required=false"]
    if args and args[0] == "diff":
        args = ("diff", "--no-ext-diff", "--no-textconv", *args[1:])
    return cmd + list(args)


def run_git(
    repo: Path | str,
    *args: str,
    timeout: float = 30,
    input: str | None = None,
    worktree: bool = False,
    error: type[TierwiseError] = ToolError,
) -> subprocess.CompletedProcess[str]:
    """Run ``git args`` in ``repo`` so nothing the repository configures can run; the caller checks the
    exit code. ``error`` is raised when git is missing or takes longer than ``timeout`` seconds."""
    path = Path(repo)
    git = git_binary(error)
    env = _env(git, path, worktree)
    cmd = git_args(git, path, env, args, timeout, error)
    try:
        return subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise error(f"git {args[0] if args else ''} took longer than {timeout:g} s in {path}") from None
