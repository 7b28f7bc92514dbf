"""Fitting prompts to the routed model's window: rank, keep whole, trim, drop, report; escalate a window
that is too small for even the fixed part, or fail before any request is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tierwise import Session
from tierwise.core import Task, TaskKind
from tierwise.errors import RoutingError
from tierwise.models.tokens import count_text
from tierwise.orchestration.fit import MARK, Piece, describe, fit, fit_prompt, room, trim
from tierwise.testing import ChaosServer

BIG = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i}\n" for i in range(400))


def test_small_pieces_stay_whole_and_the_big_one_is_trimmed_into_the_rest() -> None:
    pieces = [Piece("big.py", BIG, rank=10), Piece("calc.py", "def add(a, b):\n    return a + b\n", rank=1)]
    out = fit(pieces, 300, step="synthesize")
    assert list(out.texts) == ["big.py", "calc.py"]  # input order, whatever the rank
    assert out.texts["calc.py"] == pieces[1].text  # the small file is not lost to the big one
    assert out.texts["big.py"].endswith(MARK) and BIG.startswith(out.texts["big.py"][: -len(MARK)])
    used = sum(count_text(t) + p.overhead for t, p in zip(out.texts.values(), pieces, strict=True))
    assert used <= 300
    [cut] = out.cuts
    assert (cut.step, cut.key, cut.action, cut.tokens) == ("synthesize", "big.py", "trimmed", count_text(BIG))
    assert cut.kept == count_text(out.texts["big.py"])


def test_the_best_ranked_piece_is_kept_and_the_worst_dropped() -> None:
    pieces = [Piece(f"p{i}", BIG[:2000], rank=i) for i in range(5)]
    out = fit(pieces, 1200, step="gather")
    kept_whole = [k for k, t in out.texts.items() if t == BIG[:2000]]
    assert "p4" in kept_whole and "p0" not in out.texts
    assert {c.key for c in out.cuts if c.action == "dropped"} >= {"p0"}
    line = describe(out.cuts)
    assert line.startswith("gather: ") and "p0" in line and "window" in line


def test_whole_or_nothing_pieces_are_never_trimmed() -> None:
    rows = [Piece(f"finding {i}", '{"title": "' + "x " * 80 + '"}', floor=10**9, rank=-i) for i in range(6)]
    out = fit(rows, 250, step="summary")
    assert all(t == rows[0].text for t in out.texts.values())
    assert {c.action for c in out.cuts} == {"dropped"} and "finding 0" in out.texts


def test_trim_fits_its_budget() -> None:
    for budget in (20, 100, 500):
        head = trim(BIG, budget)
        assert count_text(head) <= budget and head.endswith(MARK)
    assert trim("short", 100) == "short"


def _toml(tmp_path: Path, base_url: str, **windows: int) -> Path:
    text = chaos_config(base_url, f"sqlite:///{tmp_path}/ledger.db")
    for old, new in windows.items():
        text = text.replace(f"context_window = {old[1:]}", f"context_window = {new}")
    path = tmp_path / "fit.toml"
    path.write_text(text)
    return path


async def test_a_window_too_small_for_the_fixed_part_asks_the_router_one_tier_up(
    chaos_server: ChaosServer, tmp_path: Path
) -> None:
    """nano's 2,000-token window cannot hold this prompt: the router is asked again with a mini hint."""
    async with Session(_toml(tmp_path, chaos_server.base_url)) as s, s.run("test", "fit") as scope:
        task = Task(input="Label these tickets:\n" + BIG[:6000], kind=TaskKind.CLASSIFY, max_output_tokens=20)
        fitted = await fit_prompt(scope, task, [Piece("ticket", "I was charged twice")])
        assert fitted.decision is not None and fitted.decision.tier.value == "mini"
        assert fitted.spec is not None and fitted.spec.context_window == 50000
        assert "tier hint mini" in fitted.decision.reason  # a hint the router bounded, not a pin
    assert chaos_server.requests("/v1/chat/completions") == []  # routing and fitting send nothing


async def test_no_window_fits_fails_before_any_request(chaos_server: ChaosServer, tmp_path: Path) -> None:
    toml = _toml(tmp_path, chaos_server.base_url, w100000=2000, w50000=2000)
    async with Session(toml) as s, s.run("test", "fit") as scope:
        # The fixed part alone is larger than every window: the router itself refuses it.
        task = Task(input="Summarize:\n" + BIG, kind=TaskKind.SYNTHESIS, step_id="synthesize")
        with pytest.raises(RoutingError, match="window") as err:
            await fit_prompt(scope, task, [])
        assert len(str(err.value).splitlines()) == 1
        # The router's pick (mini) takes the fixed part, but not with the margin and the least input the
        # pieces need; one tier up (large) has no room for its larger output reservation either.
        task = Task(input="Summarize:\n" + BIG[:4000], kind=TaskKind.SYNTHESIS, step_id="synthesize")
        with pytest.raises(RoutingError, match="window") as err:
            await fit_prompt(scope, task, [Piece("notes", BIG)])
        assert len(str(err.value).splitlines()) == 1
    assert chaos_server.requests("/v1/chat/completions") == []


def test_room_reserves_the_output_and_a_margin_for_other_tokenizers() -> None:
    from tierwise.models.spec import ModelSpec

    spec = ModelSpec(
        id="local/x", provider="local", name="x", tier="mini", context_window=8192, max_output_tokens=512
    )
    assert room(spec, 4000) == int((8192 - 512) * 0.75)  # the output is clamped to the model's maximum
    assert room(spec, 100) == int((8192 - 100) * 0.75)
