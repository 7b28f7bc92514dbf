"""API keys in front of the one path: 401/403/429, budgets that hold under concurrency (one worker and
several), rpm, spend per key, period rollover. Real sessions on the chaos server; calls go through
``gate.scope(caller)`` and ``scope.call``, as the proxy's routes do."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import pytest
import sqlalchemy as sa

from tests import secrets_scan
from tests.conftest import chaos_config
from tierwise.errors import InputError
from tierwise.ledger import Ledger, key_allowance, keys, schema
from tierwise.ledger.keys import KeyRow
from tierwise.server.errors import ApiError
from tierwise.server.gate import Caller
from tierwise.server.keys import KeyGate
from tierwise.session import Session
from tierwise.testing import ChaosServer

# The nano tier's worst case: 200 output tokens at $1.25/M, plus a little input.
NANO_OUT_USD = 200 * 1.25 / 1e6
# Replies billed at the full output allowance, so each call costs about its reserved worst case.
FULL_BILL = {"rules": [{"reply": {"text": "ok", "usage": {"completion_tokens": 200}}, "latency_s": 0.2}]}


class Clock:
    """An injected wall clock (the gate's ``now``): periods and rpm windows move when the test says."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture()
def toml(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db"))
    return path


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema (dropped afterwards)."""
    base = os.environ.get("TIERWISE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("TIERWISE_TEST_POSTGRES_URL is not set")
    psycopg = pytest.importorskip("psycopg")
    base = base.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"tierwise_keys_{uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
        try:
            sep = "&" if "?" in base else "?"
            yield f"{base}{sep}options={quote(f'-csearch_path={name}')}"
        finally:
            admin.execute(f'DROP SCHEMA "{name}" CASCADE')


def _key(url: str, name: str, **kw: object) -> tuple[KeyRow, str]:
    engine = keys.open_engine(url)
    try:
        return keys.create_key(engine, name, **kw)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def _url(session: Session) -> str:
    assert session.ledger is not None
    return session.ledger.url.render_as_string(hide_password=False)


async def _ask(gate: KeyGate, caller: Caller, text: str = "Classify: card stolen") -> float | ApiError:
    """One request as a route makes it: the cost on success, the ApiError a client would get otherwise."""
    try:
        async with gate.scope(caller) as scope:
            result = await scope.call(text, kind="classify")
            return result.cost_usd or 0.0
    except ApiError as exc:
        return exc


def _key_spend(url: str, key_id: str) -> float:
    engine = keys.open_engine(url)
    try:
        return keys.key_spend(engine, key_id)
    finally:
        engine.dispose()


# --- admit ----------------------------------------------------------------------------------------


async def test_missing_malformed_wrong_and_revoked_keys(toml: Path, tmp_path: Path) -> None:
    async with Session(toml) as s:
        row, secret = _key(_url(s), "alice")
        gate = KeyGate(s, cache_ttl_s=0.2)
        try:
            for header in (None, "", "   "):
                with pytest.raises(ApiError) as missing:
                    await gate.admit(header)
                assert (missing.value.status, missing.value.code) == (401, "invalid_api_key")
                assert "Authorization: Bearer" in missing.value.message
            for header in (f"Basic {secret}", secret, "Bearer sk-notours", f"Bearer {secret}\r\nX-Admin: 1"):
                with pytest.raises(ApiError) as bad:
                    await gate.admit(header)
                assert (bad.value.status, bad.value.code) == (401, "invalid_api_key")
                assert secret not in bad.value.message and "malformed" in bad.value.message
            with pytest.raises(ApiError) as wrong:
                await gate.admit(f"Bearer {secret[:-4]}AAAA")
            assert (wrong.value.status, wrong.value.code) == (401, "invalid_api_key")

            caller = await gate.admit(f"Bearer {secret}")
            assert caller == Caller(row.id, "alice", admin=False)
            assert await gate.admit(f"bearer   {secret}  ") == caller  # the scheme is case-insensitive

            engine = keys.open_engine(_url(s))
            keys.revoke(engine, "alice")
            engine.dispose()
            await asyncio.sleep(0.3)  # past the cache's TTL: every worker sees the revoke this soon
            with pytest.raises(ApiError) as revoked:
                await gate.admit(f"Bearer {secret}")
            assert (revoked.value.status, revoked.value.code) == (403, "key_revoked")
            assert "alice" in revoked.value.message and revoked.value.retry_after_s is None
        finally:
            await gate.aclose()
    # The key itself is nowhere on disk: not in the ledger (only its hash), not in any file the test wrote.
    assert secrets_scan.scan_tree(tmp_path, [secret, secret[3:]]) == {}


async def test_a_hot_request_reads_the_key_from_memory(toml: Path) -> None:
    async with Session(toml) as s:
        _, secret = _key(_url(s), "hot")
        gate = KeyGate(s)
        try:
            await gate.admit(f"Bearer {secret}")
            gate._engine.dispose()  # any database read from here on would have to reconnect: count them
            connects = 0

            def count(*_: object) -> None:
                nonlocal connects
                connects += 1

            sa.event.listen(gate._engine, "connect", count)
            for _ in range(50):
                await gate.admit(f"Bearer {secret}")
            assert connects == 0
        finally:
            await gate.aclose()


def test_key_names_and_limits_are_checked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    for name in ("", "a" * 65, "bad name", "evil\r\nX-Admin: 1", "caf\u00e9", "ab\u202ecd", "a/b", "é"):
        with pytest.raises(InputError, match="not allowed") as exc:
            _key(url, name)
        assert "\n" not in str(exc.value) and "\r" not in str(exc.value)
    _key(url, "ok.name_1-2")
    with pytest.raises(InputError, match="exists already"):
        _key(url, "ok.name_1-2")
    for kw in ({"budget_usd": 0.0}, {"budget_usd": float("nan")}, {"period": "week"}, {"rpm": 0}):
        with pytest.raises(InputError):
            _key(url, "limits", **kw)
    with pytest.raises(Exception, match="outlives the process"):
        keys.open_engine("sqlite://")


# --- rpm ------------------------------------------------------------------------------------------


async def test_over_rpm_is_429_with_retry_after_until_the_minute_ends(toml: Path) -> None:
    clock = Clock(datetime(2025, 3, 10, 12, 0, 15, tzinfo=UTC))
    async with Session(toml) as s:
        _, secret = _key(_url(s), "limited", rpm=3)
        gate = KeyGate(s, now=clock)
        try:
            for _ in range(3):
                await gate.admit(f"Bearer {secret}")
            with pytest.raises(ApiError) as over:
                await gate.admit(f"Bearer {secret}")
            assert (over.value.status, over.value.code) == (429, "rate_limit_exceeded")
            assert over.value.retry_after_s == pytest.approx(45)
            assert over.value.headers() == {"retry-after": "45"}
            clock.at += timedelta(seconds=46)  # the next minute
            await gate.admit(f"Bearer {secret}")
        finally:
            await gate.aclose()


async def test_rpm_is_global_across_workers(toml: Path) -> None:
    clock = Clock(datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC))
    async with Session(toml) as a, Session(toml) as b:
        _, secret = _key(_url(a), "shared", rpm=4)
        one, two = KeyGate(a, workers=2, now=clock), KeyGate(b, workers=2, now=clock)
        try:
            for gate in (one, two, one, two):
                await gate.admit(f"Bearer {secret}")
            for gate in (one, two):
                with pytest.raises(ApiError) as over:
                    await gate.admit(f"Bearer {secret}")
                assert over.value.status == 429 and over.value.retry_after_s == pytest.approx(60)
        finally:
            await one.aclose()
            await two.aclose()


# --- budgets --------------------------------------------------------------------------------------


async def _flood(gates: list[KeyGate], secret: str, n: int = 100) -> tuple[list[float], list[ApiError]]:
    callers = [await g.admit(f"Bearer {secret}") for g in gates]
    outcomes = await asyncio.gather(*(_ask(gates[i % len(gates)], callers[i % len(gates)]) for i in range(n)))
    ok = [o for o in outcomes if isinstance(o, float)]
    refused = [o for o in outcomes if isinstance(o, ApiError)]
    return ok, refused


def _check_refusals(refused: list[ApiError]) -> None:
    for err in refused:
        assert (err.status, err.code, err.type) == (429, "budget_exceeded", "insufficient_quota"), err.message
        assert err.retry_after_s is not None and err.retry_after_s > 0
        assert "budget of API key 'tight'" in err.message


async def test_100_concurrent_calls_never_pass_the_keys_budget(toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(FULL_BILL)
    cap = 3.5 * NANO_OUT_USD  # covers three worst-case calls, not four
    async with Session(toml) as s:
        row, secret = _key(_url(s), "tight", budget_usd=cap, period="day")
        gate = KeyGate(s)
        try:
            ok, refused = await _flood([gate], secret)
        finally:
            await gate.aclose()
        url = _url(s)
    assert len(ok) == 3 and len(refused) == 97
    _check_refusals(refused)
    assert len(chaos_server.requests("/v1/chat/completions")) == 3  # refused before any upstream call
    spent = _key_spend(url, row.id)
    assert spent == pytest.approx(sum(ok)) and spent <= cap
    assert spent > 2.9 * NANO_OUT_USD  # the calls really cost about their worst case


async def _two_workers(url_a: str | Path, url_b: str | Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(FULL_BILL)
    cap = 3.5 * NANO_OUT_USD
    async with Session(url_a) as a, Session(url_b) as b:
        row, secret = _key(_url(a), "tight", budget_usd=cap, period="day")
        one, two = KeyGate(a, workers=2), KeyGate(b, workers=2)
        try:
            ok, refused = await _flood([one, two], secret)
        finally:
            await one.aclose()
            await two.aclose()
        url = _url(a)
    assert 2 <= len(ok) <= 3 and len(ok) + len(refused) == 100
    _check_refusals(refused)
    spent = _key_spend(url, row.id)
    assert spent == pytest.approx(sum(ok)) and spent <= cap
    # Both workers gave back what they held and did not spend: the allowance handed out is what was spent.
    engine = keys.open_engine(url)
    with engine.connect() as conn:
        granted = conn.execute(sa.select(schema.key_allowances.c.granted_usd)).scalar_one()
        grants = conn.execute(sa.select(sa.func.count()).select_from(schema.key_grants)).scalar_one()
    engine.dispose()
    assert granted == pytest.approx(spent) and grants == 0


async def test_two_workers_on_one_sqlite_file_share_the_cap(toml: Path, chaos_server: ChaosServer) -> None:
    await _two_workers(toml, toml, chaos_server)


@pytest.mark.postgres
async def test_two_workers_on_postgres_share_the_cap(
    tmp_path: Path, pg_url: str, chaos_server: ChaosServer
) -> None:
    path = tmp_path / "pg.toml"
    path.write_text(chaos_config(chaos_server.base_url, pg_url))
    await _two_workers(path, path, chaos_server)


async def test_spend_of_an_earlier_process_counts_against_the_key(
    toml: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"rules": [{"reply": {"text": "ok", "usage": {"completion_tokens": 200}}}]})
    cap = 3.5 * NANO_OUT_USD
    async with Session(toml) as s:
        row, secret = _key(_url(s), "tight", budget_usd=cap, period="month")
        gate = KeyGate(s)
        caller = await gate.admit(f"Bearer {secret}")
        first = [await _ask(gate, caller) for _ in range(2)]
        await gate.aclose()
    assert all(isinstance(c, float) for c in first)
    async with Session(toml) as s:  # a restart: the new process holds only what is left
        gate = KeyGate(s)
        caller = await gate.admit(f"Bearer {secret}")
        second = [await _ask(gate, caller) for _ in range(3)]
        await gate.aclose()
        url = _url(s)
    assert isinstance(second[0], float)
    assert all(isinstance(c, ApiError) and c.status == 429 for c in second[1:])
    assert _key_spend(url, row.id) <= cap


async def test_a_key_without_budget_does_not_inherit_the_per_run_cap(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    path = tmp_path / "capped.toml"
    extra = f"[budget]\nper_run_usd = {1.5 * NANO_OUT_USD}\n"
    path.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db", extra))
    chaos_server.set_script({"rules": [{"reply": {"text": "ok", "usage": {"completion_tokens": 200}}}]})
    async with Session(path) as s:
        _, secret = _key(_url(s), "open")
        gate = KeyGate(s)
        caller = await gate.admit(f"Bearer {secret}")
        costs = [await _ask(gate, caller) for _ in range(3)]  # a per-run cap would stop the second
        run_id = gate._runs[caller.key_id].scope.id
        await gate.aclose()
        assert s.ledger is not None
        run = s.ledger.get_run(run_id)
    assert all(isinstance(c, float) for c in costs), costs
    assert run.budget_usd is None and run.kind == "proxy"


# --- attribution and periods ----------------------------------------------------------------------


async def test_spend_is_attributed_to_the_right_key(toml: Path) -> None:
    async with Session(toml) as s:
        a, secret_a = _key(_url(s), "team-a")
        b, secret_b = _key(_url(s), "team-b", admin=True)
        gate = KeyGate(s)
        try:
            ca, cb = await gate.admit(f"Bearer {secret_a}"), await gate.admit(f"Bearer {secret_b}")
            assert cb.admin and not ca.admin
            costs_a = await asyncio.gather(*(_ask(gate, ca) for _ in range(3)))
            costs_b = [await _ask(gate, cb, "Classify: where is my parcel")]
            run_a = gate._runs[a.id].scope.id
        finally:
            await gate.aclose()
        url = _url(s)
        assert s.ledger is not None
        run = s.ledger.get_run(run_a)
    assert run.kind == "proxy" and run.label == "proxy key team-a" and run.status == "ok"
    assert run.metadata["api_key_id"] == a.id and run.metadata["api_key"] == "team-a"
    assert _key_spend(url, a.id) == pytest.approx(sum(costs_a))  # type: ignore[arg-type]
    assert _key_spend(url, b.id) == pytest.approx(sum(costs_b))  # type: ignore[arg-type]
    engine = keys.open_engine(url)
    by_key = {r["name"]: (r["calls"], r["cost_usd"]) for r in keys.spend_by_key(engine)}
    engine.dispose()
    assert by_key == {
        "team-a": (3, pytest.approx(sum(costs_a))),  # type: ignore[arg-type]
        "team-b": (1, pytest.approx(sum(costs_b))),  # type: ignore[arg-type]
    }


async def test_the_budget_renews_at_the_period_boundary(toml: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"rules": [{"reply": {"text": "ok", "usage": {"completion_tokens": 200}}}]})
    clock = Clock(datetime(2025, 3, 10, 23, 59, 0, tzinfo=UTC))
    cap = 1.5 * NANO_OUT_USD  # one call a day
    async with Session(toml) as s:
        row, secret = _key(_url(s), "daily", budget_usd=cap, period="day")
        gate = KeyGate(s, now=clock)
        try:
            caller = await gate.admit(f"Bearer {secret}")
            assert isinstance(await _ask(gate, caller), float)
            refused = await _ask(gate, caller)
            assert isinstance(refused, ApiError) and refused.code == "budget_exceeded"
            assert refused.retry_after_s == pytest.approx(60)  # the day ends in a minute
            first_run = gate._runs[row.id].scope.id
            clock.at += timedelta(minutes=2)  # a new day
            assert isinstance(await _ask(gate, caller), float)
            second_run = gate._runs[row.id].scope.id
            await asyncio.sleep(0.05)  # the idle old run closes in the background
        finally:
            await gate.aclose()
        assert s.ledger is not None
        old, new = s.ledger.get_run(first_run), s.ledger.get_run(second_run)
    assert first_run != second_run and old.status == new.status == "ok"
    assert old.metadata["period_start"] == "2025-03-10T00:00:00+00:00"
    assert new.metadata["period_start"] == "2025-03-11T00:00:00+00:00"


async def test_a_dead_workers_unused_allowance_is_reclaimed(toml: Path) -> None:
    async with Session(toml) as s:
        row, _ = _key(_url(s), "k", budget_usd=1.0)
        engine = keys.open_engine(_url(s))
    start = datetime(2025, 3, 1, tzinfo=UTC)
    # A grant held by a run whose process is gone (no lease): it spent nothing.
    got = key_allowance.take(
        engine, key_id=row.id, period_start=start, run_id="dead-run", cap_usd=1.0, want_usd=1.0
    )
    assert got == pytest.approx(1.0)
    with Ledger(_url(s)) as ledger:
        ledger.acquire_run("live-run")
        got = key_allowance.take(
            engine, key_id=row.id, period_start=start, run_id="live-run", cap_usd=1.0, want_usd=0.4
        )
        assert got == pytest.approx(0.4)  # taken back from the dead run
        # A live holder is never taken from: 0.6 is left, so a need of 0.7 gets nothing.
        kw = {"key_id": row.id, "period_start": start, "run_id": "other", "cap_usd": 1.0, "want_usd": 0.7}
        assert key_allowance.take(engine, **kw, need_usd=0.7) == 0.0  # type: ignore[arg-type]
        assert key_allowance.take(engine, **kw) == pytest.approx(0.6)  # type: ignore[arg-type]
        ledger.release_run("live-run")
    engine.dispose()


# --- over HTTP, with the official SDK -------------------------------------------------------------


def test_the_openai_sdk_sees_401_403_and_429(proxy_toml: Path, chaos_server: ChaosServer) -> None:
    import openai

    from tests.server.conftest import serve

    chaos_server.set_script({"rules": [{"reply": {"text": "ok", "usage": {"completion_tokens": 200}}}]})
    url = f"sqlite:///{proxy_toml.parent}/ledger.db"
    _, secret = _key(url, "sdk", budget_usd=1.5 * NANO_OUT_USD, period="day")
    _, revoked = _key(url, "gone")
    engine = keys.open_engine(url)
    keys.revoke(engine, "gone")
    engine.dispose()
    ask = {"model": "tierwise/nano", "messages": [{"role": "user", "content": "Classify: card stolen"}]}
    with serve(proxy_toml, KeyGate) as served:

        def client(key: str) -> openai.OpenAI:
            return openai.OpenAI(base_url=served.base_url, api_key=key, max_retries=0, timeout=30)

        with client("tw-" + "x" * 43) as wrong, pytest.raises(openai.AuthenticationError) as denied:
            wrong.chat.completions.create(**ask)  # type: ignore[call-overload]
        assert denied.value.code == "invalid_api_key"
        with client(revoked) as gone, pytest.raises(openai.PermissionDeniedError) as forbidden:
            gone.chat.completions.create(**ask)  # type: ignore[call-overload]
        assert forbidden.value.code == "key_revoked"
        with client(secret) as ok:
            first = ok.chat.completions.create(**ask)  # type: ignore[call-overload]
            assert first.choices[0].message.content == "ok"
            with pytest.raises(openai.RateLimitError) as spent:
                ok.chat.completions.create(**ask)  # type: ignore[call-overload]
        assert spent.value.code == "budget_exceeded"
        assert int(spent.value.response.headers["retry-after"]) > 0
    assert secrets_scan.scan_tree(proxy_toml.parent, [secret, revoked]) == {}
