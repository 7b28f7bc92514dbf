"""`tierwise serve` as a user runs it: a subprocess on a free port, with a key, warmed up before it answers;
its connections stay open between a client's requests."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.conftest import tw
from tierwise.testing import ChaosServer


@dataclass
class Running:
    url: str
    key: str
    port: int
    banner: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def running(chaos: ChaosServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    from tests.conftest import chaos_config

    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "tierwise.toml").write_text(chaos_config(chaos.base_url, "sqlite:///.tierwise/ledger.db"))
    made = tw("keys", "create", "cli-test", cwd=tmp, timeout=120)
    assert made.returncode == 0, made.stderr
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIERWISE_CONFIG")}
    log = (tmp / "serve.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tierwise", "serve", "--port", str(port)],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # start-up includes the warm-up
        while True:
            assert proc.poll() is None, (tmp / "serve.log").read_text()
            try:
                httpx.get(url + "/v1/models", timeout=1.0)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "tierwise serve did not answer"
                time.sleep(0.2)
        yield Running(url, made.stdout.strip(), port, (tmp / "serve.log").read_text())
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_serves_with_keys_and_tells_where(running: Running) -> None:
    assert f"tierwise proxy on {running.url}/v1" in running.banner
    assert f"dashboard: {running.url}/" in running.banner
    with openai.OpenAI(base_url=running.url + "/v1", api_key=running.key, max_retries=0, timeout=30) as c:
        t0 = time.perf_counter()
        reply = c.chat.completions.create(model="tierwise/auto", messages=[{"role": "user", "content": "ok"}])
        took = time.perf_counter() - t0
        assert reply.choices[0].message.content
        assert took < 1.0, f"the first request took {took:.2f} s: the server did not warm up"
    wrong = "tw-" + "x" * 40
    with (
        openai.OpenAI(base_url=running.url + "/v1", api_key=wrong, max_retries=0) as c,
        pytest.raises(openai.AuthenticationError),
    ):
        c.models.list()


def test_an_idle_connection_stays_open_past_five_seconds(running: Running) -> None:
    """A pooled connection a busy client has not reused for a few seconds must still be open: closing it
    races the client's next request on it, which then fails (uvicorn's default closes after 5 s)."""
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    try:
        for i in range(2):
            conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {running.key}"})
            reply = conn.getresponse()  # RemoteDisconnected when the server closed the idle connection
            assert reply.status == 200 and reply.read()
            if i == 0:
                first = conn.sock
                time.sleep(6.5)
        assert conn.sock is first  # the same connection, not a new one
    finally:
        conn.close()
