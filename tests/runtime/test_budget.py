"""Budgets: reserve the worst case, settle the actual, never pass a cap under concurrency."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tierwise.errors import BudgetExceeded, InputError
from tierwise.runtime import Budget, Caps


def test_reserve_refuses_what_would_pass_the_cap() -> None:
    b = Budget(Caps(usd=1.0))
    r = b.reserve(0.6, 10)
    with pytest.raises(BudgetExceeded, match=r"\$0\.400000 left of \$1"):
        b.reserve(0.6, 10)
    b.commit(r, 0.1, 5)  # the call cost less than its worst case: the rest is free again
    b.reserve(0.6, 10)
    assert b.spent_usd == pytest.approx(0.1)


def test_parent_caps_apply_to_children() -> None:
    process = Budget(Caps(usd=1.0), name="process")
    a, b = process.child(Caps(usd=0.8)), process.child(Caps(usd=0.8))
    a.reserve(0.7, 1)
    with pytest.raises(BudgetExceeded, match="process budget"):
        b.reserve(0.5, 1)


def test_token_and_call_caps() -> None:
    b = Budget(Caps(tokens=100, calls=2))
    b.reserve(None, 60)
    with pytest.raises(BudgetExceeded, match="tokens"):
        b.reserve(None, 60)
    b.reserve(None, 10)
    with pytest.raises(BudgetExceeded, match="calls"):
        b.reserve(None, 1)


def test_unknown_price_cannot_be_budgeted_in_money() -> None:
    with pytest.raises(BudgetExceeded, match="no known price"):
        Budget(Caps(usd=1.0)).reserve(None, 10)


@pytest.mark.parametrize("value", [0, -1.0])
def test_zero_or_negative_caps_are_rejected(value: float) -> None:
    with pytest.raises(InputError, match="greater than 0"):
        Caps(usd=value)


async def test_concurrent_asyncio_calls_never_pass_the_cap() -> None:
    b = Budget(Caps(usd=1.0))
    admitted = 0

    async def call() -> None:
        nonlocal admitted
        try:
            r = b.reserve(0.03, 1)
        except BudgetExceeded:
            return
        admitted += 1
        await asyncio.sleep(0.001)
        b.commit(r, 0.03, 1)

    await asyncio.gather(*(call() for _ in range(200)))
    assert admitted == 33
    assert b.spent_usd <= 1.0


def test_concurrent_threads_never_pass_the_cap() -> None:
    b = Budget(Caps(usd=1.0))
    results: list[bool] = []

    def worker() -> None:
        for _ in range(100):
            try:
                r = b.reserve(0.01, 1)
            except BudgetExceeded:
                results.append(False)
                continue
            b.commit(r, 0.01, 1)
            results.append(True)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 100
    assert b.spent_usd == pytest.approx(1.0)


def test_headroom_is_the_tightest_money_cap_left() -> None:
    process = Budget(Caps(usd=0.5), name="process")
    run = process.child(Caps(usd=1.0))
    assert run.headroom_usd() == pytest.approx(0.5)
    run.reserve(0.2, 10)
    assert run.headroom_usd() == pytest.approx(0.3)
    assert Budget().headroom_usd() is None and Budget(Caps(calls=3)).headroom_usd() is None
    assert Budget(Caps(calls=3)).caps_counts and not Budget(Caps(usd=1.0)).caps_counts


def test_a_grant_is_drawn_as_a_worker_reports_and_released_when_it_is_done() -> None:
    run = Budget(Caps(usd=1.0))
    grant = run.reserve(0.4, 0, what="a batch worker's grant")
    assert run.draw(grant, 0.1, 100, 3) is None
    assert (run.spent_usd, run.spent_tokens, run.calls) == (pytest.approx(0.1), 100, 3)
    assert run.reserved_usd == pytest.approx(0.3) and run.headroom_usd() == pytest.approx(0.6)
    # A worker's provider billed past its grant: the money is counted and the budget is overrun.
    over = run.draw(grant, 0.95, 10, 1)
    assert over is not None and run.spent_usd == pytest.approx(1.05)
    with pytest.raises(BudgetExceeded, match="overrun"):
        run.reserve(0.001, 1)
    run.release(grant)
    assert run.reserved_usd == pytest.approx(0.0) and run.reserved_calls == 0
