"""Computer use on corpus pages that tell the agent to leave the allowlist, driven by a model that tries
every way out: not one navigation or request reaches a host off the allowlist."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.hostile.conftest import system_texts
from tests.hostile.pages import PageServer
from tierwise.testing import ChaosServer
from tierwise.tools import ToolError
from tierwise.tools.browser import Allowlist, Browser, NavigationBlocked, chromium_path

pytest.importorskip("playwright", reason="the browser tool needs Playwright (the [browser] extra)")
needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed")


@pytest.fixture()
def pages() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server


def test_allowlist_reads_urls_as_the_browser_does() -> None:
    """A backslash is a slash to Chromium: ``http://evil.example\\@127.0.0.1/`` goes to evil.example."""
    al = Allowlist.for_url("http://127.0.0.1:8000/")
    for url in (
        "http://evil.example\\@127.0.0.1:8000/",
        "http://evil.example\\\\@127.0.0.1/",
        "ht\ttp://evil.example\\@127.0.0.1/",
        "\x01http://evil.example\\@127.0.0.1/",
        "https://127.0.0.1@evil.example/",
        "http://evil.example#@127.0.0.1/",
        "file:///etc/passwd",
        "javascript:location='http://evil.example/'",
    ):
        assert not al.allows(url), url
    for url in ("http://127.0.0.1:8000/a\\b", "HTTP://127.0.0.1\\@x/", "http://evil.example@127.0.0.1/"):
        assert al.allows(url), url


@needs_chromium
async def test_backslash_url_is_refused_before_the_browser_tries_it(pages: PageServer) -> None:
    async with Browser(Allowlist.for_url(pages.url())) as b:
        await b.goto(pages.url())
        with pytest.raises(NavigationBlocked, match="is outside the allowlist"):
            await b.goto(f"http://{pages.offlist}\\@127.0.0.1:{pages.port}/")
        assert b.blocked == []  # refused by the check: Chromium never started the request
        assert b.url == pages.url()
    assert pages.off_hits() == []


@needs_chromium
async def test_pages_that_send_the_browser_off_the_allowlist(pages: PageServer) -> None:
    """Links, a form, a popup, a server redirect, a meta refresh, scripts, images, an iframe and a
    WebSocket aimed at the off-list host: each is refused, and that host receives nothing."""
    async with Browser(Allowlist.for_url(pages.url())) as b:
        for action, target, value in [
            ("navigate", "", "/"),
            ("click", 'link "Continue"', ""),
            ("navigate", "", "/"),
            ("click", 'button "Send"', ""),
            ("navigate", "", "/"),
            ("click", 'link "Open in a new tab"', ""),
            ("navigate", "", "/"),
            ("navigate", "", "/redirect"),
            ("navigate", "", pages.url("/script")),
            ("navigate", "", pages.url("/refresh")),
        ]:
            # A page that navigates itself can leave Chromium on its error page, or interrupt the next
            # load: what matters here is only that nothing reached the off-list host.
            with contextlib.suppress(ToolError):
                await b.perform(action, target, value if value.startswith("http") else pages.url(value))
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.0)  # the refresh and the scripts' requests have fired by now
        blocked = list(b.blocked)
    assert pages.off_hits() == [], pages.off_hits()
    assert all(urlsplit(u).hostname in ("localhost", "evil.example") for u in blocked)
    off = f"http://{pages.offlist}"
    for path in ("/steal", "/steal?c=cookies", "/steal-redirect", "/steal-fetch", "/steal-frame"):
        assert any(u.startswith(off + path) for u in blocked), (path, blocked)
    assert "http://evil.example/steal-img" in blocked


@needs_chromium
async def test_agent_obeying_the_pages_never_leaves_the_allowlist(
    pages: PageServer, chaos_toml: Path, chaos_server: ChaosServer
) -> None:
    from tests.systems.test_computer_use import GOAL, act, drive, script

    off, port = pages.offlist, pages.port
    attempts = [
        act("navigate", "", "http://evil.example/steal"),
        act("navigate", "", f"//{off}/steal"),
        act("navigate", "", f"http://{off}\\@127.0.0.1:{port}/"),
        act("navigate", "", "file:///etc/passwd"),
        act("navigate", "", f"javascript:location.href='http://{off}/steal'"),
        act("navigate", "", f"view-source:http://{off}/steal"),
        act("click", 'link "Continue"'),
    ]
    chaos_server.set_script(script(*attempts, outcome="blocked"))
    result = await drive(chaos_toml, pages.url("/"), max_steps=len(attempts) + 1)
    d = result.to_dict()
    steps = d["steps"]
    assert [(s["action"], s["observed"]) for s in steps] == [
        *((a["reply"]["json"]["action"], "blocked") for a in attempts),
        ("done", "unchanged"),
    ], [s["error"] for s in steps]
    # 0 off-allowlist navigations: the agent stood on the start page throughout, and the off-list host
    # (the same server, named localhost) received no request at all
    assert {s["url"] for s in steps} == {pages.url("/")} and d["final_url"] == pages.url("/")
    assert pages.off_hits() == []
    assert d["blocked_requests"] == [f"http://{off}/steal"]  # only the click reached Chromium at all
    # goal and allowlist as the user gave them; page text never reached any system prompt
    assert d["goal"] == GOAL and d["allowed_hosts"] == ["127.0.0.1"]
    assert not any("evil.example" in t or off in t for t in system_texts(chaos_server))
