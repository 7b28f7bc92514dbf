"""A loopback server for the corpus pages, answering as two hosts: ``127.0.0.1`` (allowed) and
``localhost`` (off the allowlist). Every request is recorded with its Host header, so a test can prove
that not one byte reached the off-list host."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from tests.hostile.conftest import CORPUS


class PageServer:
    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []  # (host without port, path)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.hits.append(((self.headers.get("Host") or "").rsplit(":", 1)[0], self.path))
                server.answer(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def offlist(self) -> str:
        return f"localhost:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def off_hits(self) -> list[tuple[str, str]]:
        return [h for h in self.hits if h[0] != "127.0.0.1"]

    def answer(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?", 1)[0]
        if path == "/redirect":
            req.send_response(302)
            req.send_header("Location", f"http://{self.offlist}/steal-redirect")
            req.end_headers()
            return
        page = {"/": "index", "/refresh": "refresh", "/script": "script"}.get(path)
        if page is None:
            req.send_response(404)
            req.end_headers()
            return
        body = Path(CORPUS / "pages" / f"{page}.html").read_text().replace("OFFLIST", self.offlist).encode()
        req.send_response(200)
        req.send_header("Content-Type", "text/html; charset=utf-8")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
