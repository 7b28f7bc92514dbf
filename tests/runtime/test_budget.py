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
