"""A headless Chromium a computer-use agent drives through Playwright, fenced in by a host allowlist.

The allowlist is enforced twice, because Playwright's request interception does not see redirect hops:
1. every request (navigations, subresources, scripts' fetches) is routed through a handler that aborts
   requests to hosts outside the allowlist and records them;
2. Chromium itself sends everything not addressed to an allowed host to a dead proxy on loopback, so a
   redirect, a WebSocket or anything else that slips past interception fails closed without a byte (or a
   DNS lookup) leaving the machine.
Navigations the agent asks for are checked before they start. The allowlist is frozen: nothing a page
says can widen it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal
from urllib.parse import urljoin, urlsplit

from tierwise.errors import InputError
from tierwise.tools.workspace import ToolError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from playwright.async_api import BrowserContext, Locator, Page, Playwright, Request, Route

    _LocatorAction = Callable[[Locator], Awaitable[object]]

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ENV = "TIERWISE_CHROMIUM"
_BASE_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",  # WebRTC must not go around the proxy
)
_ROLES = frozenset(  # the ARIA roles Playwright's get_by_role accepts, as snapshots print them
    (  # noqa: SIM905 - one readable block beats 50 quoted words
        "alert article banner button cell checkbox columnheader combobox complementary contentinfo dialog "
        "form grid gridcell group heading img link list listbox listitem main menu menubar menuitem "
        "menuitemcheckbox menuitemradio navigation option paragraph progressbar radio radiogroup region row "
        "rowheader scrollbar search searchbox separator slider spinbutton status switch tab table tablist "
        "tabpanel textbox toolbar tree treeitem"
    ).split()
)
# `- button "Submit" [disabled]`, `textbox "Name"`, `link About us`: a role, then a quoted or bare name.
_TARGET = re.compile(r'^\s*-?\s*(?P<role>[a-z]+)\b\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\[:]*))?')

ActionName = Literal["click", "type", "select", "scroll", "navigate", "done"]


class NavigationBlocked(ToolError):
    """A navigation or request was aimed at a host outside the allowlist; nothing was sent."""


class BrowserError(ToolError):
    """An action could not be performed: no such element, a page that does not load, a timeout."""


def chromium_path() -> str | None:
    """The Chromium executable to launch (``$TIERWISE_CHROMIUM`` or Debian's), or None if absent."""
    path = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    found = shutil.which(path) if not os.path.isabs(path) else path
    return found if found and os.access(found, os.X_OK) else None


_SPECIAL = ("http:", "https:", "ws:", "wss:")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_TAB_NEWLINE = dict.fromkeys(map(ord, "\t\n\r"))


def _as_browser_reads(url: str) -> str:
    """``url`` as Chromium parses it, where that differs from ``urlsplit``: in http(s) and ws(s) URLs a
    backslash is a slash (WHATWG URL), so ``http://evil.example\\@127.0.0.1/`` goes to evil.example even
    though urlsplit reads its host as 127.0.0.1."""
    # As the URL standard does first: C0 controls and spaces trimmed, tabs and newlines removed anywhere.
    text = url.strip(_C0_AND_SPACE).translate(_TAB_NEWLINE)
    return text.replace("\\", "/") if text.lower().startswith(_SPECIAL) else text


def _host(url: str) -> str:
    try:
        return (urlsplit(_as_browser_reads(url)).hostname or "").lower()
    except ValueError:
        return ""


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Hosts the browser may talk to (any port, http or https). Frozen: pages cannot add to it."""

    hosts: frozenset[str]

    @classmethod
    def for_url(cls, url: str, extra: tuple[str, ...] | list[str] = ()) -> Allowlist:
        """The host of ``url`` plus ``extra`` hosts; InputError for a URL that is not http(s)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(
                f"URL {url!r} is not an http(s) URL with a host: pass e.g. http://127.0.0.1:8000/"
            )
        hosts = {parts.hostname.lower()}
        for h in extra:
            host = h.strip().lower()
            if "://" in host:
                host = _host(host)
            if not host or "/" in host:
                raise InputError(f"allowed host {h!r} is not a host name: pass e.g. example.com")
            hosts.add(host.strip("[]"))
        return cls(frozenset(hosts))

    def allows(self, url: str) -> bool:
        if url.startswith(("about:blank", "data:", "blob:")):
            return True  # never leaves the browser
        parts = urlsplit(_as_browser_reads(url))
        return parts.scheme in ("http", "https", "ws", "wss") and _host(url) in self.hosts

    def check(self, url: str) -> None:
        if not self.allows(url):
            raise NavigationBlocked(
                f"{url!r} is outside the allowlist ({', '.join(sorted(self.hosts))}): not visited"
            )

    def proxy_bypass(self) -> str:
        """Chromium's --proxy-bypass-list: the allowed hosts go direct, everything else to the dead proxy.

        ``<-loopback>`` removes Chromium's implicit bypass of localhost/127.0.0.1, so loopback hosts are
        only reachable when they are on the list."""
        entries = ["<-loopback>"]
        for h in sorted(self.hosts):
            try:
                entries.append(f"[{h}]" if ipaddress.ip_address(h).version == 6 else h)
            except ValueError:
                entries.append(h)
        return ";".join(entries)


def parse_target(page: Page, target: str) -> Locator:
    """A locator from a target as the ARIA snapshot shows it (``button "Submit"``) or ``css=SELECTOR``."""
    text = target.strip()
    if not text:
        raise BrowserError("the action has no target: name an element from the page snapshot")
    if text.startswith("css="):
        return page.locator(text[4:]).first
    m = _TARGET.match(text)
    if m and m.group("role") in _ROLES:
        raw = m.group("quoted")
        name = raw.replace('\\"', '"') if raw is not None else (m.group("bare") or "").strip()
        if not name:
            return page.get_by_role(m.group("role")).first  # type: ignore[arg-type]
        return page.get_by_role(m.group("role"), name=name, exact=True).first  # type: ignore[arg-type]
    return page.get_by_text(text).first


class Browser:
    """One fresh headless Chromium (new temporary profile) per agent run.

    ``async with Browser(allowlist) as b: await b.goto(url); await b.click('button "Submit"')``.
    """

    reads = ("web pages on allowed hosts (DOM, accessibility tree, pixels)",)
    writes = ("form input, clicks and navigation on allowed hosts", "a temporary browser profile, deleted")

    def __init__(
        self,
        allowlist: Allowlist,
        *,
        executable_path: str | None = None,
        timeout_s: float = 10.0,
        viewport: tuple[int, int] = (1280, 800),
    ) -> None:
        self.allowlist = allowlist
        self.executable_path = executable_path or chromium_path()
        self.timeout_ms = timeout_s * 1000
        self.viewport = viewport
        self.blocked: list[str] = []  # every URL refused, in order: the record of what pages attempted
        self.blocked_navigations: list[str] = []  # the subset that would have replaced a page
        self._pw: Playwright | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._dead_port: socket.socket | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            from playwright.async_api import async_playwright
        except ImportError as exc:
            raise InputError("the browser tool needs Playwright: pip install 'tierwise[browser]'") from exc
        if self.executable_path is None:
            raise InputError(
                f"Chromium not found at {DEFAULT_CHROMIUM}: install it (apt-get install chromium) "
                f"or set {CHROMIUM_ENV} to its path"
            )
        self._profile = tempfile.TemporaryDirectory(prefix="tierwise-chromium-")
        self._pw = await async_playwright().start()
        # Traffic for hosts outside the allowlist is "proxied" to a port we hold bound but never listen
        # on: connections are refused, and no other process can take the port while the browser runs.
        self._dead_port = socket.socket()
        self._dead_port.bind(("127.0.0.1", 0))
        args = [
            *_BASE_ARGS,
            f"--proxy-server=http://127.0.0.1:{self._dead_port.getsockname()[1]}",
            f"--proxy-bypass-list={self.allowlist.proxy_bypass()}",
        ]
        try:
            self._context = await self._pw.chromium.launch_persistent_context(
                self._profile.name,
                executable_path=self.executable_path,
                args=args,
                headless=True,
                service_workers="block",  # a service worker's requests would bypass interception
                viewport={"width": self.viewport[0], "height": self.viewport[1]},
                accept_downloads=False,
            )
        except Exception as exc:
            await self.close()
            raise BrowserError(
                f"Chromium at {self.executable_path} did not start: {_first_line(exc)}"
            ) from exc
        self._context.set_default_timeout(self.timeout_ms)
        await self._context.route("**/*", self._guard)
        # Redirect hops bypass routing; the dead proxy stops them, and this records them.
        self._context.on("request", self._note_request)
        self._page = self._context.pages[0] if self._context.pages else await self._context.new_page()

    async def close(self) -> None:
        if self._context is not None:
            # Closing a crashed browser must not mask the error that brought us here.
            with contextlib.suppress(Exception):
                await self._context.close()
        if self._pw is not None:
            await self._pw.stop()
        if self._profile is not None:
            self._profile.cleanup()
        if self._dead_port is not None:
            self._dead_port.close()
        self._context = self._pw = self._page = self._profile = self._dead_port = None

    async def __aenter__(self) -> Browser:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _guard(self, route: Route) -> None:
        url = route.request.url
        if self.allowlist.allows(url):
            await route.continue_()
        else:
            self._refuse(route.request)
            await route.abort("blockedbyclient")

    def _note_request(self, request: Request) -> None:
        if request.redirected_from is not None and not self.allowlist.allows(request.url):
            self._refuse(request)

    def _refuse(self, request: Request) -> None:
        self.blocked.append(request.url)
        if request.is_navigation_request():
            self.blocked_navigations.append(request.url)

    @property
    def page(self) -> Page:
        if self._page is None:
            raise BrowserError("the browser is not started: use `async with Browser(...)`")
        if self._page.is_closed() and self._context is not None and self._context.pages:
            self._page = self._context.pages[-1]
        return self._page

    # --- observation -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.page.url

    async def title(self) -> str:
        return await self.page.title()

    async def aria_snapshot(self) -> str:
        """The page as text: Playwright's ARIA snapshot of the body (roles, names, values)."""
        try:
            return await self.page.locator("body").aria_snapshot()
        except Exception as exc:
            raise BrowserError(f"no accessibility snapshot of {self.url}: {_first_line(exc)}") from exc

    async def screenshot(self, path: Path | None = None) -> bytes:
        """A PNG of the viewport (written to ``path`` too when given)."""
        return await self.page.screenshot(type="png", path=path)

    # --- actions -----------------------------------------------------------------------------------

    async def goto(self, url: str) -> None:
        self.allowlist.check(url)
        before = self.page.url
        try:
            await self.page.goto(url, wait_until="load")
        except Exception as exc:
            reason = _first_line(exc)
            if "ERR_BLOCKED_BY_CLIENT" in reason or "ERR_PROXY_CONNECTION_FAILED" in reason:
                await self._restore(before)
                raise NavigationBlocked(f"{url!r} led outside the allowlist: not visited") from exc
            raise BrowserError(f"could not load {url!r}: {reason}") from exc

    async def _restore(self, before: str) -> None:
        """Back to the page we were on, not Chromium's error page, after a blocked navigation."""
        if self.allowlist.allows(self.page.url) or not self.allowlist.allows(before):
            return
        with contextlib.suppress(Exception):
            await self.page.go_back(wait_until="load")
        if self.page.url != before and before != "about:blank":
            with contextlib.suppress(Exception):
                await self.page.goto(before, wait_until="load")

    async def click(self, target: str) -> None:
        await self._act(target, "click", lambda loc: loc.click())

    async def type(self, target: str, text: str) -> None:
        await self._act(target, "type into", lambda loc: loc.fill(text))

    async def select(self, target: str, option: str) -> None:
        async def pick(loc: Locator) -> None:
            try:  # models name options by their visible label; fall back to the value attribute
                await loc.select_option(label=option, timeout=2000)
            except Exception:
                await loc.select_option(value=option)

        await self._act(target, "select in", pick)

    async def scroll(self, direction: str = "down", target: str = "") -> None:
        if target.strip():
            await self._act(target, "scroll to", lambda loc: loc.scroll_into_view_if_needed())
            return
        dy = -600 if direction.strip().lower() == "up" else 600
        await self.page.mouse.wheel(0, dy)
        await self.page.wait_for_timeout(100)  # let scroll handlers run before the next snapshot

    async def perform(self, action: ActionName | str, target: str = "", value: str = "") -> None:
        """One agent action by name; ``done`` does nothing."""
        if action == "click":
            await self.click(target)
        elif action == "type":
            await self.type(target, value)
        elif action == "select":
            await self.select(target, value)
        elif action == "scroll":
            await self.scroll(value or "down", target)
        elif action == "navigate":
            await self.goto(_absolute(self.url, value or target))
        elif action != "done":
            raise BrowserError(
                f"unknown action {action!r}: use click, type, select, scroll, navigate or done"
            )

    async def _act(self, target: str, verb: str, fn: _LocatorAction) -> None:
        loc = parse_target(self.page, target)
        if await loc.count() == 0:  # fail fast instead of waiting out the timeout for an absent element
            raise BrowserError(f"could not {verb} {target!r}: no element on {self.url} matches it")
        blocked_before, before = len(self.blocked_navigations), self.page.url
        try:
            await fn(loc)
        except Exception as exc:
            raise BrowserError(f"could not {verb} {target!r}: {_first_line(exc)}") from exc
        # A click may start a navigation: wait for it, but a page that never settles is not fatal.
        with contextlib.suppress(Exception):
            await self.page.wait_for_load_state("load", timeout=self.timeout_ms)
        if len(self.blocked_navigations) > blocked_before:
            await self._restore(before)
            raise NavigationBlocked(
                f"{verb} {target!r} tried to open {self.blocked_navigations[-1]!r}, outside the allowlist"
            )


def _absolute(base: str, url: str) -> str:
    return urljoin(base, url.strip())


def _first_line(exc: BaseException) -> str:
    """Playwright's message without its call log and ``Page.goto:`` prefix, or its " at URL" tail."""
    lines = str(exc).strip().splitlines()
    text = re.sub(r"^\w+\.\w+: ", "", lines[0]) if lines else type(exc).__name__
    return text.split(" at http", 1)[0]
