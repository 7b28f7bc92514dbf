"""Running the chaos server: `serve()` (blocking, for the CLI), `ChaosServer` (a context manager for tests
and benchmarks, in a thread or a subprocess) and `main()` behind `python -m tierwise.testing`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOGGING_CONFIG

from tierwise.testing.script import Script
from tierwise.testing.server import build_app
from tierwise.testing.state import ChaosState

__all__ = ["ChaosServer", "ChaosServerError", "check_options", "main", "serve"]

_READY = "tierwise chaos-server listening on "
_READY_RE = re.compile(re.escape(_READY) + r"(\S+)")

ScriptLike = Script | Mapping[str, Any] | str | Path | None


class ChaosServerError(ValueError):
    """The chaos server cannot start as asked (a bad script, latency or port); the message is one line."""


MAX_LATENCY_S = 3600.0  # an hour per request is already no server at all; more is a typo


def _where(loc: tuple[int | str, ...]) -> str:
    """pydantic's ('rules', 0, 'fault', 'kind') as rules[0].fault.kind: the entry a user can find."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


def _validate(data: object, where: str) -> Script:
    try:
        return Script.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ChaosServerError(f"{where}: {_where(err['loc'])}: {msg}{more}") from None


def load_script(script: ScriptLike) -> Script:
    """A `Script` from an object, a dict, a path to a JSON file, or None (empty script).

    A file that cannot be read, is not JSON or does not describe a script raises `ChaosServerError`
    naming the file and the bad entry."""
    if script is None:
        return Script()
    if isinstance(script, Script):
        return script
    if isinstance(script, str | Path):
        path = Path(script)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ChaosServerError(f"cannot read chaos script {path}: {exc.strerror or exc}") from None
        return _parse(raw, f"chaos script {path}")
    return _validate(script, "chaos script")


def _parse(raw: bytes | str, where: str) -> Script:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ChaosServerError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ChaosServerError(f"{where} nests too deeply to be a script") from None
    return _validate(data, where)


def check_options(
    port: int, latency_s: float, per_token_latency_s: float = 0.0, embedding_dim: int = 64
) -> None:
    """What `serve` can be asked: a TCP port (0 picks a free one) and finite, sane latencies."""
    if not 0 <= port <= 65535:
        raise ChaosServerError(f"port {port} is not a TCP port: pass 1-65535, or 0 for a free one")
    if not 1 <= embedding_dim <= 65536:
        raise ChaosServerError(f"embedding dimension must be between 1 and 65536, got {embedding_dim}")
    for name, value in (("latency", latency_s), ("per-token latency", per_token_latency_s)):
        if not (math.isfinite(value) and 0 <= value <= MAX_LATENCY_S):
            raise ChaosServerError(f"{name} must be between 0 and {MAX_LATENCY_S:g} seconds, got {value}")


def _bind(host: str, port: int) -> socket.socket:
    # Binding ourselves (rather than letting uvicorn do it) makes port=0 usable: the port is known
    # before the server starts, with no pick-then-bind race.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it Nagle + delayed ACK add ~40 ms to every response (headers and body are two writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # a burst of concurrent clients must not overflow the accept queue
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = (
            "is in use" if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE else "cannot be used"
        )
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ChaosServerError(
            f"{host}:{port} {reason} ({detail}): pick another port, or 0 for a free one"
        ) from None
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def _config(state: ChaosState, *, log_config: bool) -> uvicorn.Config:
    return uvicorn.Config(
        build_app(state),
        http="auto",  # httptools / uvloop when installed, h11 / asyncio otherwise
        loop="auto",
        lifespan="off",
        access_log=False,
        log_level="warning",
        # In-process, leave the host program's logging configuration alone.
        log_config=LOGGING_CONFIG if log_config else None,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
        backlog=2048,
    )


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    script: ScriptLike = None,
    latency_s: float = 0.0,
    *,
    per_token_latency_s: float = 0.0,
    embedding_dim: int = 64,
    require_key: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the chaos server until interrupted (Ctrl+C / SIGTERM). Port 0 picks a free port; the base URL
    is printed as `tierwise chaos-server listening on URL` and passed to `on_ready`. Bad options, a bad
    script or a port that cannot be bound raise `ChaosServerError` before anything listens."""
    check_options(port, latency_s, per_token_latency_s, embedding_dim)
    state = ChaosState(
        load_script(script),
        latency_s=latency_s,
        per_token_latency_s=per_token_latency_s,
        embedding_dim=embedding_dim,
        require_key=require_key,
    )
    server = uvicorn.Server(_config(state, log_config=True))
    sock = _bind(host, port)
    url = _url(host, sock)

    def announce(url: str) -> None:
        print(f"{_READY}{url}", flush=True)
        if on_ready is not None:
            on_ready(url)

    with contextlib.closing(sock), asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(_serve(server, sock, url, announce))


async def _serve(
    server: uvicorn.Server, sock: socket.socket, url: str, announce: Callable[[str], None]
) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task  # startup failed: surface its exception
            return
        await asyncio.sleep(0.01)
    announce(url)
    await task


class ChaosServer:
    """A chaos server for the duration of a `with` block.

    `in_process=True` runs uvicorn in a daemon thread with its own event loop (fast to start, state
    inspectable); `in_process=False` runs `python -m tierwise.testing` as a subprocess, so a benchmark's
    client does not share the server's interpreter and GIL. Both are real socket servers.
    """

    def __init__(
        self,
        script: ScriptLike = None,
        *,
        latency_s: float = 0.0,
        per_token_latency_s: float = 0.0,
        embedding_dim: int = 64,
        require_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        in_process: bool = True,
        startup_timeout_s: float = 15.0,
    ) -> None:
        self.script = load_script(script)
        self.latency_s = latency_s
        self.per_token_latency_s = per_token_latency_s
        self.embedding_dim = embedding_dim
        self.require_key = require_key
        self.host = host
        self.port = port
        self.in_process = in_process
        self.startup_timeout_s = startup_timeout_s
        self.state: ChaosState | None = None  # in-process only: the live state, for debugging
        self._base_url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._http: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ending in `/v1`."""
        if self._base_url is None:
            raise RuntimeError("ChaosServer is not running; use it as `with ChaosServer(...) as server:`")
        return self._base_url

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._base_url is not None:
            return
        if self.in_process:
            self._start_thread()
        else:
            self._start_subprocess()
        self._http = httpx.Client(base_url=self.root_url, timeout=10.0)

    def _start_thread(self) -> None:
        self.state = ChaosState(
            self.script,
            latency_s=self.latency_s,
            per_token_latency_s=self.per_token_latency_s,
            embedding_dim=self.embedding_dim,
            require_key=self.require_key,
        )
        server = uvicorn.Server(_config(self.state, log_config=False))
        sock = _bind(self.host, self.port)
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                    runner.run(_serve(server, sock, "", lambda _: ready.set()))
            except BaseException as exc:  # SystemExit from a failed startup included
                failure.append(exc)
            finally:
                sock.close()
                ready.set()

        self._server = server
        self._thread = threading.Thread(target=run, name="tierwise-chaos-server", daemon=True)
        self._thread.start()
        if not ready.wait(self.startup_timeout_s) or failure or not server.started:
            self.stop()
            raise RuntimeError(f"chaos server did not start: {failure[0] if failure else 'timed out'}")
        self._base_url = _url(self.host, sock)

    def _start_subprocess(self) -> None:
        cmd = [
            sys.executable, "-m", "tierwise.testing",
            "--host", self.host, "--port", str(self.port),
            "--latency", repr(self.latency_s), "--per-token-latency", repr(self.per_token_latency_s),
            "--embedding-dim", str(self.embedding_dim), "--script", "-",
        ]  # fmt: skip
        if self.require_key is not None:
            cmd += ["--require-key", self.require_key]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(self.script.model_dump_json(exclude_none=True))
        proc.stdin.close()
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = proc.stdout

        def pump() -> None:
            # Keep draining stdout for the server's whole life so it can never block on a full pipe.
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="tierwise-chaos-stdout", daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=self.startup_timeout_s)
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise RuntimeError(f"chaos server subprocess did not start (exit code {proc.poll()}): {cmd}")
            if match := _READY_RE.search(line):
                self._base_url = match.group(1)
                return

    def stop(self) -> None:
        """Shut down (in-flight requests get up to 2 s) and release the port. Safe to call twice."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self._server = None
        self._base_url = None

    # Control endpoints, over HTTP so that in-process and subprocess servers behave the same.
    def _control(self) -> httpx.Client:
        if self._http is None:
            raise RuntimeError("ChaosServer is not running; use it as `with ChaosServer(...) as server:`")
        return self._http

    def set_script(self, script: ScriptLike) -> None:
        """Replace the active script; its counters start fresh. The request log is kept."""
        body = load_script(script).model_dump(mode="json", exclude_none=True)
        self._control().post("/_chaos/script", json=body).raise_for_status()

    def reset(self) -> None:
        """Back to the script given at construction, with fresh counters and an empty request log."""
        self._control().post("/_chaos/reset").raise_for_status()

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Logged requests, oldest first (optionally only those to `path`, e.g. "/v1/embeddings")."""
        response = self._control().get("/_chaos/requests")
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["data"]
        return [e for e in entries if path is None or e["path"] == path]


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m tierwise.testing`: run the chaos server in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m tierwise.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011, help="0 picks a free port (default: 8011)")
    parser.add_argument("--latency", type=float, default=0.0, help="fixed seconds per request")
    parser.add_argument("--per-token-latency", type=float, default=0.0, help="extra seconds per output token")
    parser.add_argument("--script", help="chaos script JSON file, or - for stdin")
    parser.add_argument("--require-key", help="answer 401 unless `Authorization: Bearer KEY`")
    parser.add_argument("--embedding-dim", type=int, default=64)
    args = parser.parse_args(argv)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    try:
        script: ScriptLike = None
        if args.script == "-":
            script = _parse(sys.stdin.read() or "{}", "chaos script on stdin")
        elif args.script:
            script = Path(args.script)
        with contextlib.suppress(KeyboardInterrupt):
            serve(
                args.host,
                args.port,
                script,
                args.latency,
                per_token_latency_s=args.per_token_latency,
                embedding_dim=args.embedding_dim,
                require_key=args.require_key,
            )
    except ChaosServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
