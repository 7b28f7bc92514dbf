"""Ledger ids: unique within a process, and across a fork (a forked worker must not repeat its parent's)."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from tierwise.ledger.records import new_id


def _child_ids(conn) -> None:  # type: ignore[no-untyped-def]
    conn.send([new_id() for _ in range(1000)])
    conn.close()


def test_ids_are_unique_and_shaped_like_uuid_hex() -> None:
    ids = [new_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids[:100])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    ctx = mp.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=_child_ids, args=(child_end,))
    proc.start()
    child = parent_end.recv()
    proc.join(10)
    mine = [new_id() for _ in range(1000)]
    assert not set(child) & set(mine)
    assert {c[:16] for c in child} != {m[:16] for m in mine}
