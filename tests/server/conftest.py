"""The proxy served by uvicorn on a free loopback port (a background thread with its own event loop),
its Session on the chaos server; the official openai SDK as the client."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
import uvicorn

from tests.conftest import chaos_config
from tierwise.ledger.records import CallRecord
from tierwise.server.app import create_app
from tierwise.server.gate import Gate, OpenGate
from tierwise.session import Session
from tierwise.testing import ChaosServer

T = TypeVar("T")

# A catalog embedding model served by the chaos server, beside the three chat tiers.
EMBED_MODEL = """
[[models]]
id = "chaos/embed"
provider = "chaos"
name = "embed-model"
tier = "nano"
input_per_mtok = 0.02
output_per_mtok = 0.0
capabilities = ["embeddings"]
"""


@dataclass
class Served:
    """A running proxy: its URLs, its (open) session, and a way to run a coroutine on its loop."""

    root: str
    session: Session
    loop: asyncio.AbstractEventLoop

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def calls(self, operation: str | None = None) -> list[CallRecord]:
        """Every call the proxy recorded, oldest first, once queued records have landed."""
        ledger = self.session.ledger
        assert ledger is not None
        ledger.flush()
        return ledger.calls(operation=operation)


@contextmanager
def serve(config: Path | str, gate: Callable[[Session], Gate] = OpenGate, **app_kw: Any) -> Iterator[Served]:
    """Serve ``create_app`` on a free port until the block ends (the app owns and closes its session)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        session = Session(config)
        session.open()
        app = create_app(session, gate(session), owns_session=True, **app_kw)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        box.update(session=session, server=server, loop=asyncio.get_running_loop())
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        started.set()
        await serving

    def run() -> None:
        try:
            loop_factory = uvicorn.Config(app=None).get_loop_factory()  # type: ignore[arg-type]
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(main())
        except BaseException as exc:
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="tierwise-proxy-test", daemon=True)
    thread.start()
    started.wait(60)
    if "error" in box or not box.get("server") or not box["server"].started:
        raise RuntimeError(f"the proxy did not start: {box.get('error')}")
    try:
        yield Served(f"http://127.0.0.1:{port}", box["session"], box["loop"])
    finally:
        box["server"].should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture()
def proxy_toml(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db", EMBED_MODEL))
    return path


@pytest.fixture(scope="module")
def shared_proxy(chaos: ChaosServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One proxy for a whole module (tests that do not read the ledger): start-up paid once."""
    tmp = tmp_path_factory.mktemp("proxy")
    path = tmp / "tierwise.toml"
    path.write_text(chaos_config(chaos.base_url, f"sqlite:///{tmp}/ledger.db", EMBED_MODEL))
    with serve(path) as served:
        yield served


@pytest.fixture()
def proxy(proxy_toml: Path) -> Iterator[Served]:
    with serve(proxy_toml) as served:
        yield served


@pytest.fixture()
def client(proxy: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=30) as c:
        yield c


def async_client(proxy: Served) -> openai.AsyncOpenAI:
    """Made inside the test (its event loop), closed by the test."""
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=30)
