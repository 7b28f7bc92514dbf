"""The browser tool in real headless Chromium against the local web app: actions, snapshot, allowlist."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from tests.systems.webapp import WebApp
from tierwise.errors import InputError
from tierwise.tools.browser import Allowlist, Browser, BrowserError, NavigationBlocked, chromium_path

pytest.importorskip("playwright", reason="the browser tool needs Playwright (the [browser] extra)")
pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="Chromium is not installed at /usr/bin/chromium"
)


@pytest.fixture()
def app() -> Iterator[WebApp]:
    with WebApp() as web:
        yield web


def fenced(app: WebApp) -> Browser:
    """A browser allowed only on 127.0.0.1 (not on localhost, the app's other name)."""
    # Opened inside each test, not in an async fixture: fixtures run on the session's event loop.
    return Browser(Allowlist.for_url(app.url()), timeout_s=5)


async def test_fill_select_and_submit_a_form(app: WebApp) -> None:
    async with fenced(app) as browser:
        await browser.goto(app.url("/"))
        snapshot = await browser.aria_snapshot()
        assert (
            'textbox "Name"' in snapshot and 'combobox "Size"' in snapshot and 'button "Submit"' in snapshot
        )
        await browser.perform("type", 'textbox "Name"', "Ada")
        await browser.perform("select", '- combobox "Size":', "Large")
        await browser.perform("click", 'button "Submit"')
        assert browser.url.endswith("/submit?name=Ada&size=large")
        assert 'heading "Thank you, Ada!"' in await browser.aria_snapshot()


async def test_css_targets_scroll_and_screenshot(app: WebApp) -> None:
    async with fenced(app) as browser:
        await browser.goto(app.url("/"))
        await browser.type("css=#name", "Bob")
        assert await browser.page.input_value("#name") == "Bob"
        await browser.scroll("down")
        assert await browser.page.evaluate("window.scrollY") > 0
        png = await browser.screenshot()
        assert png.startswith(b"\x89PNG")
        with pytest.raises(BrowserError, match="could not click"):
            await browser.click('button "No such button"')


async def test_navigation_outside_the_allowlist_is_refused_before_sending(app: WebApp) -> None:
    async with fenced(app) as browser:
        await browser.goto(app.url("/"))
        with pytest.raises(NavigationBlocked, match="outside the allowlist"):
            await browser.perform("navigate", value="http://evil.example/collect")
        with pytest.raises(NavigationBlocked):
            await browser.goto(app.other_url("/about"))
        assert browser.url == app.url("/")
        assert app.hits_on("localhost") == []


async def test_links_and_redirects_cannot_leave_the_allowlist(app: WebApp) -> None:
    async with fenced(app) as browser:
        await browser.goto(app.url("/injection"))
        with pytest.raises(NavigationBlocked, match=re.escape("evil.example")):
            await browser.click('link "Continue"')
        with pytest.raises(NavigationBlocked):
            await browser.goto(app.url("/redirect?to=" + app.other_url("/about")))
        assert app.hits_on("localhost") == []  # the redirect hop never reached the other host
        assert app.other_url("/about") in browser.blocked


async def test_subresources_and_script_requests_are_blocked(app: WebApp) -> None:
    async with fenced(app) as browser:
        await browser.goto(app.url("/leak"))
        await browser.page.wait_for_timeout(300)
        assert app.other_url("/pixel.png") in browser.blocked
        assert app.other_url("/beacon") in browser.blocked
        assert browser.blocked_navigations == []  # subresources, not navigations
        assert app.hits_on("localhost") == []


async def test_allow_host_opens_another_host(app: WebApp) -> None:
    async with Browser(Allowlist.for_url(app.url(), ["localhost"]), timeout_s=5) as b:
        await b.goto(app.url("/redirect?to=" + app.other_url("/about")))
        assert b.url == app.other_url("/about")
    assert [h.path for h in app.hits_on("localhost")] == ["/about"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_url_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    async with Browser(Allowlist.for_url(url), timeout_s=5) as b:
        with pytest.raises(
            BrowserError, match=re.escape(f"could not load {url!r}: net::ERR_CONNECTION_REFUSED")
        ):
            await b.goto(url)


def test_allowlist_is_host_based_and_frozen() -> None:
    allow = Allowlist.for_url("http://127.0.0.1:8000/x", ["https://Docs.Example.com/path", "[::1]"])
    assert allow.hosts == frozenset({"127.0.0.1", "docs.example.com", "::1"})
    assert allow.allows("http://127.0.0.1:9999/other") and allow.allows("about:blank")
    assert not allow.allows("http://evil.example/") and not allow.allows("file:///etc/passwd")
    assert allow.proxy_bypass() == "<-loopback>;127.0.0.1;[::1];docs.example.com"
    with pytest.raises(InputError, match="not an http"):
        Allowlist.for_url("file:///etc/passwd")
    with pytest.raises(AttributeError):
        allow.hosts = frozenset({"evil.example"})  # type: ignore[misc]
