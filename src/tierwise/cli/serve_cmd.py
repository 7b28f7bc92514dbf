"""``tierwise serve``: the OpenAI-compatible router proxy (and its dashboard) under uvicorn."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from tierwise.cli.common import _state, fail, guarded, load_config

_LOOPBACK_NAMES = {"localhost"}


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(host: str, port: int) -> None:
    """Bind once before uvicorn does, so a port in use is one clear line instead of a log and exit 1."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise fail(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): pick another with --port"
            ) from None


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)] = 8800,
        workers: Annotated[int, typer.Option(help="worker processes", min=1, max=64)] = 1,
        no_auth: Annotated[
            bool, typer.Option("--no-auth", help="serve without API keys (loopback hosts only)")
        ] = False,
        max_body_bytes: Annotated[int, typer.Option(help="largest request body accepted", min=1024)] = 4
        * 1024
        * 1024,
        config: Annotated[Path | None, typer.Option("--config", help="tierwise.toml to serve with")] = None,
    ) -> None:
        """Serve the OpenAI-compatible API: point any OpenAI client at http://HOST:PORT/v1 and use
        model="tierwise/auto" (or tierwise/large|mini|nano, or a catalog id)."""
        if config is not None:
            _state["config_path"] = config
        if no_auth and not _loopback(host):
            raise fail(f"--no-auth serves anyone who can reach {host}: use it on a loopback host (127.0.0.1)")
        cfg = guarded(load_config)  # a broken tierwise.toml is one line now, not in every worker
        _check_port(host, port)

        import uvicorn

        from tierwise.server import app as server_app

        path = _state["config_path"] or os.environ.get("TIERWISE_CONFIG")
        os.environ[server_app.ENV_CONFIG] = str(Path(path).resolve()) if path else ""
        os.environ[server_app.ENV_NO_AUTH] = "1" if no_auth else "0"
        os.environ[server_app.ENV_MAX_BODY] = str(max_body_bytes)
        os.environ[server_app.ENV_WORKERS] = str(workers)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"
        how = "no keys (--no-auth)" if no_auth else "create a key: tierwise keys create NAME"
        typer.echo(f"tierwise proxy on {url}/v1 ({len(list(cfg.catalog))} models, {how}); dashboard: {url}/")
        uvicorn.run(
            "tierwise.server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # nothing reads the client's address: no X-Forwarded-* rewrite per request
            # uvicorn[standard] ships both; named so a missing one fails loudly instead of going slow.
            loop="uvloop",
            http="httptools",
            # uvicorn's 5 s drops pooled connections a busy client has not reused yet: its next request on
            # one races the close and fails (seen at 100 clients).
            timeout_keep_alive=75,
        )
