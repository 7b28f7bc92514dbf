"""The spend dashboard, served by uvicorn on loopback over a Session whose tiers are the chaos server: its
admin-only JSON API, and the page itself in real headless Chromium (Playwright on /usr/bin/chromium)."""

from __future__ import annotations

import asyncio
import math
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from tierwise import Session
from tierwise.ledger import CallRecord
from tierwise.server.dashboard import dashboard_routes
from tierwise.server.errors import ApiError
from tierwise.server.gate import Caller
from tierwise.testing import ChaosServer

ADMIN_KEY = "tw-dash-admin-0123456789"
USER_KEY = "tw-dash-user-0123456789"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HOSTILE_LABEL = '<img src=x onerror="document.title=1"> fix the login bug'


class FixedKeyGate:
    """A test-only Gate: one admin key, one ordinary key, everything else refused as the real gate does."""

    async def admit(self, authorization: str | None) -> Caller:
        if authorization == f"Bearer {ADMIN_KEY}":
            return Caller("key-admin", "admin", admin=True)
        if authorization == f"Bearer {USER_KEY}":
            return Caller("key-alice", "alice")
        raise ApiError(401, "invalid API key: pass a key from `tierwise keys create`", code="invalid_api_key")

    def scope(self, caller: Caller):  # type: ignore[no-untyped-def]
        raise NotImplementedError("the dashboard never opens a run")

    async def aclose(self) -> None:
        return None


def money(v: float | None) -> str:
    """The page's money format (dashboard.js ``money``): 3 significant digits below a dollar."""
    if v is None:
        return "—"
    if v == 0:
        return "$0"
    a = abs(v)
    if a >= 1:
        return f"${a:,.2f}"
    digits = min(12, max(2, 2 - math.floor(math.log10(a))))
    return f"${a:.{digits}f}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[str]:
    """The app on a free loopback port, in this event loop (so the test's own calls run beside it)."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def dashboard_app(session: Session) -> Starlette:
    return Starlette(routes=dashboard_routes(session, FixedKeyGate()))


async def ledger_calls(session: Session) -> list[CallRecord]:
    assert session.ledger is not None
    return await asyncio.to_thread(session.ledger.calls)


def spend(calls: list[CallRecord]) -> float:
    return sum(c.cost_usd or 0.0 for c in calls)


async def make_calls(session: Session) -> str:
    """A one-off call and an orchestration-like run with two steps; returns that run's id."""
    await session.call("classify this", kind="classify")
    async with session.run("orchestrate", HOSTILE_LABEL) as scope:
        plan = await scope.call("plan the fix of the login bug", kind="plan", step_id="plan-fix")
        await scope.record_step_durable("plan-fix", "ok", results=[plan])
        label = await scope.call("label this ticket", kind="classify", step_id="label")
        await scope.record_step_durable("label", "ok", results=[label])
        return scope.id


async def test_api_is_for_the_admin_key_only(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    async with Session(chaos_toml) as session, served(dashboard_app(session)) as base:
        run_id = await make_calls(session)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            page = await http.get("/")
            assert page.status_code == 200 and "Admin key" in page.text  # public, but no data in it
            assert "script-src 'self'" in page.headers["content-security-policy"]
            js = await http.get("/dashboard/static/dashboard.js")
            assert js.status_code == 200 and "javascript" in js.headers["content-type"]
            # Ledger text only ever goes in as textContent: no HTML parsing of strings anywhere.
            assert not re.search(r"\.(inner|outer)HTML|insertAdjacentHTML|document\.write", js.text)
            assert (await http.get("/dashboard/static/dashboard.css")).status_code == 200
            assert (await http.get("/dashboard/static/../dashboard.py")).status_code == 404

            missing = await http.get("/dashboard/api/overview")
            assert missing.status_code == 401
            assert missing.json()["error"]["code"] == "invalid_api_key"
            wrong = await http.get("/dashboard/api/runs", headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            user = await http.get("/dashboard/api/runs", headers={"authorization": f"Bearer {USER_KEY}"})
            assert user.status_code == 403 and "not an admin key" in user.json()["error"]["message"]

            admin = {"authorization": f"Bearer {ADMIN_KEY}"}
            overview = (await http.get("/dashboard/api/overview?range=1h&by=tier", headers=admin)).json()
            calls = await ledger_calls(session)
            assert overview["totals"]["calls"] == len(calls) == 3
            assert overview["totals"]["cost_usd"] == pytest.approx(spend(calls))
            assert overview["totals"]["counterfactual_usd"] > overview["totals"]["cost_usd"]
            assert sum(p["total"] for p in overview["spend"]["points"]) == pytest.approx(spend(calls))
            assert overview["runs"][0]["id"] == run_id
            tree = (await http.get(f"/dashboard/api/runs/{run_id}", headers=admin)).json()
            assert [s["step_id"] for s in tree["steps"]] == ["plan-fix", "label"]
            assert tree["steps"][0]["calls"][0]["tier"] == "large"
            assert (await http.get("/dashboard/api/runs/nope", headers=admin)).status_code == 404
            bad = await http.get("/dashboard/api/spend?range=2y", headers=admin)
            assert bad.status_code == 400 and "unknown range" in bad.json()["error"]["message"]
            bad = await http.get("/dashboard/api/spend?by=provider", headers=admin)
            assert bad.status_code == 400
            assert (await http.get("/dashboard/api/runs?limit=0", headers=admin)).status_code == 400


async def test_the_page_in_headless_chromium(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    """Loads offline, refuses a wrong key, shows the spend of calls just made in the chart and the
    table (the ledger's figures), updates without a reload, and opens a run's step tree."""
    pw_api = pytest.importorskip("playwright.async_api", reason="needs Playwright (the [browser] extra)")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    async with (
        Session(chaos_toml) as session,
        served(dashboard_app(session)) as base,
        pw_api.async_playwright() as pw,
    ):
        run_id = await make_calls(session)
        calls = await ledger_calls(session)
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 1000})
            errors: list[str] = []
            requested: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # The wrong key's 401 is logged by Chromium as a failed resource: expected, not a script error.
            page.on(
                "console",
                lambda m: (
                    errors.append(m.text) if m.type == "error" and "status of 401" not in m.text else None
                ),
            )
            page.on("request", lambda r: requested.append(r.url))
            expect = pw_api.expect

            await page.goto(base + "/")
            await expect(page.locator("#login")).to_be_visible()
            await page.fill("#key", "not-the-key")
            await page.click("#login-form button[type=submit]")
            await expect(page.locator("#login-msg")).to_contain_text("invalid API key")
            await expect(page.locator("#board")).to_be_hidden()

            await page.fill("#key", ADMIN_KEY)
            await page.click("#login-form button[type=submit]")
            total = spend(calls)
            await expect(page.locator("#total-spend")).to_have_text(money(total))
            await expect(page.locator("#total-calls")).to_have_text("3")
            # The chart: each tier's spend in the legend, and the exact bucket total in the tooltip.
            for tier in {c.tier for c in calls}:
                amount = spend([c for c in calls if c.tier == tier])
                await expect(page.locator(f'#chart-legend [data-key="{tier}"] .amt')).to_have_text(
                    money(amount)
                )
            t = int(calls[0].created_at.timestamp()) // 60 * 60
            await page.hover(f'#chart rect.hit[data-t="{t}"]')
            in_bucket = spend([c for c in calls if int(c.created_at.timestamp()) // 60 * 60 == t])
            await expect(page.locator("#tooltip")).to_be_visible()
            await expect(page.locator("#tooltip")).to_contain_text(money(in_bucket))
            await expect(page.locator("#tooltip")).to_contain_text("all-large")
            # The table: the run's spend, and its hostile label as text, never as markup.
            row = page.locator(f'#runs tr[data-run="{run_id}"]')
            run_spend = spend([c for c in calls if c.run_id == run_id])
            await expect(row.locator("td").nth(4)).to_have_text(money(run_spend))
            await expect(row.locator("td.label")).to_have_text(HOSTILE_LABEL)
            assert await page.locator("#runs img").count() == 0

            # Another call: the page shows it without a reload.
            await page.evaluate("window.__notReloaded = true")
            await session.call("classify that too", kind="classify")
            calls = await ledger_calls(session)
            await expect(page.locator("#total-spend")).to_have_text(money(spend(calls)), timeout=10_000)
            await expect(page.locator("#total-calls")).to_have_text("4")
            assert await page.evaluate("window.__notReloaded") is True

            # A run's step tree, with each call's decision reason.
            await row.click()
            tree = page.locator("#run-tree")
            await expect(tree.locator('[data-step="plan-fix"]')).to_be_visible()
            plan_call = next(c for c in calls if c.step_id == "plan-fix")
            step = tree.locator('[data-step="plan-fix"]')
            await expect(step.locator("td.reason").first).to_contain_text(plan_call.reason)
            await expect(step.locator(".badge.tier-large").first).to_be_visible()
            await expect(tree.locator('[data-step="label"] td.reason').first).to_contain_text(
                next(c for c in calls if c.step_id == "label").reason
            )
            await expect(page.locator("#run-title")).to_contain_text(HOSTILE_LABEL)

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert errors == []
            assert all(u.startswith(base) or u.startswith("data:") for u in requested), requested
            assert await page.title() == "tierwise · spend"  # the hostile label's onerror never ran
        finally:
            await browser.close()


async def test_served_beside_the_proxy_by_create_app(chaos_toml: Path, chaos_server: ChaosServer) -> None:
    """With the proxy's own app and the open gate (no keys): a proxied call shows up in the dashboard."""
    openai = pytest.importorskip("openai")
    from tierwise.server.app import create_app
    from tierwise.server.gate import OpenGate

    async with Session(chaos_toml) as session:
        gate = OpenGate(session)
        app = create_app(session, gate, extra_routes=dashboard_routes(session, gate))
        async with served(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
            client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
            reply = await client.chat.completions.create(
                model="tierwise/auto", messages=[{"role": "user", "content": "classify this ticket"}]
            )
            assert reply.choices[0].message.content
            assert (await http.get("/")).status_code == 200
            overview = (await http.get("/dashboard/api/overview")).json()  # the open gate admits all
            calls = await ledger_calls(session)
            assert overview["totals"]["calls"] == len(calls) >= 1
            assert overview["totals"]["cost_usd"] == pytest.approx(spend(calls))
            assert overview["runs"][0]["kind"] == "proxy" and overview["runs"][0]["calls"] == len(calls)
            await client.close()
