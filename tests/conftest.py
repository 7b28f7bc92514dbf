"""Shared fixtures: real loopback servers (our chaos server, llama.cpp's server) and config files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import secrets_scan
from tierwise.testing import ChaosServer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Plant secrets in the environment for the whole run (and the subprocesses it starts)."""
    secrets_scan.plant()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any file it wrote under pytest's base temp directory holds a planted secret."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = getattr(factory, "_basetemp", None) if factory is not None else None
    if basetemp is None:  # no test asked for a temp directory: nothing was written there
        return
    leaks = secrets_scan.scan_tree(Path(basetemp))
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        lines = [f"planted secret leaked into {len(leaks)} file(s) under {basetemp}:"]
        lines += [
            f"  {path}: {', '.join(v[:12] + '...' for v in found)}" for path, found in sorted(leaks.items())
        ]
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for line in lines:
            if reporter is not None:
                reporter.write_line(line, red=True, bold=True)
            else:
                print(line, file=sys.stderr)


@pytest.fixture(scope="session")
def chaos() -> Iterator[ChaosServer]:
    with ChaosServer() as server:
        yield server


@pytest.fixture()
def chaos_server(chaos: ChaosServer) -> Iterator[ChaosServer]:
    """The session's chaos server, reset to its default behaviour around each test."""
    chaos.reset()
    yield chaos
    chaos.reset()


def chaos_config(base_url: str, ledger_url: str, extra: str = "") -> str:
    """A tierwise.toml whose three tiers are served by the chaos server (as in the README's example)."""
    return f"""
[ledger]
url = "{ledger_url}"

[providers.chaos]
kind = "openai"
base_url = "{base_url}"
api_key_env = "CHAOS_KEY"
timeout_s = 2.0

[[models]]
id = "chaos/large"
provider = "chaos"
name = "large-model"
tier = "large"
input_per_mtok = 2.50
cached_input_per_mtok = 0.25
output_per_mtok = 15.00
context_window = 100000
max_output_tokens = 1000
capabilities = ["json_schema", "tools"]

[[models]]
id = "chaos/mini"
provider = "chaos"
name = "mini-model"
tier = "mini"
input_per_mtok = 0.75
cached_input_per_mtok = 0.075
output_per_mtok = 4.50
context_window = 50000
max_output_tokens = 500
capabilities = ["json_schema", "tools"]

[[models]]
id = "chaos/nano"
provider = "chaos"
name = "nano-model"
tier = "nano"
input_per_mtok = 0.20
cached_input_per_mtok = 0.02
output_per_mtok = 1.25
context_window = 2000
max_output_tokens = 200
capabilities = ["json_schema"]

[tiers]
large = "chaos/large"
mini = "chaos/mini"
nano = "chaos/nano"

[retry]
max_attempts = 3
base_delay_s = 0.01
max_delay_s = 0.2
{extra}
"""


@pytest.fixture()
def chaos_toml(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db"))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """llama.cpp's own OpenAI-compatible server (`python -m llama_cpp.server`) with SmolLM2 on loopback."""
    pytest.importorskip("llama_cpp")
    from tierwise.providers.local import gguf_path

    port = _free_port()
    # llama.cpp logs a lot to stderr: a file, not a pipe nobody reads, or the server blocks when it fills.
    log = tempfile.NamedTemporaryFile("w+", prefix="llama-server-", suffix=".log", delete=False)  # noqa: SIM115 - the fixture closes it at teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
            "--model_alias",
            "smollm2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {Path(log.name).read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("llama_cpp.server did not start in 90 s")
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def tw(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, in a subprocess, without any key or config from the environment."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIERWISE_CONFIG")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tierwise", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class PeakCalls:
    """Wraps a session's ``runtime.call`` and keeps the most calls that were in flight at once."""

    def __init__(self, runtime: Any) -> None:
        self.peak = self._live = 0
        self._orig = runtime.call
        runtime.call = self._call

    async def _call(self, task: Any, scope: Any, **kw: Any) -> Any:
        self._live += 1
        self.peak = max(self.peak, self._live)
        try:
            return await self._orig(task, scope, **kw)
        finally:
            self._live -= 1
