"""A model-written regular expression cannot freeze a run: a size cap, a time limit, off the event loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.orchestration.test_orchestrate import plan_script
from tierwise import Session
from tierwise.testing import ChaosServer
from tierwise.tools import ToolError, Workspace

# Exponential in both Python's `re` and `regex`: on the line below `re` takes ~20 s of CPU (finite, so
# the old code fails these tests instead of hanging them) and `regex` would take minutes.
CATASTROPHIC = "(a|aa)+$"


def _slow_ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "ok.txt").write_text("hello TODO\n")
    (root / "aaa.txt").write_text("a" * 38 + "!\n")
    (root / "long.txt").write_text("a" * 5000 + "b\n")  # the textbook case, for (a+)+$
    return root


@pytest.mark.timeout(120)
def test_catastrophic_pattern_ends_in_a_tool_error_within_the_limit(tmp_path: Path) -> None:
    ws = Workspace(_slow_ws(tmp_path))
    start, cpu_start = time.monotonic(), time.process_time()
    with pytest.raises(ToolError, match="took longer than 2 s") as err:
        ws.search(CATASTROPHIC, "aaa.txt")
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu_start
    print(f"catastrophic regex: ToolError after {elapsed:.2f} s ({cpu:.2f} s of CPU)")
    # The regex engine counts its limit in CPU time: on an idle machine that is the wall time too; on a
    # loaded one the wall time stretches, but it never hangs.
    assert cpu < 3.0
    assert elapsed < 20.0
    assert "\n" not in str(err.value)
    with pytest.raises(ToolError, match="took longer than 2 s"):
        ws.search("(a+)+$", "long.txt")
    assert ws.search("TODO") == "ok.txt:1: hello TODO"  # ordinary searches still work


def test_overlong_and_invalid_patterns_are_tool_errors(tmp_path: Path) -> None:
    ws = Workspace(_slow_ws(tmp_path))
    with pytest.raises(ToolError, match="at most 500"):
        ws.search("a" * 501)
    with pytest.raises(ToolError, match="not a valid regular expression"):
        ws.search("(unclosed")


@pytest.mark.timeout(120)
async def test_the_event_loop_keeps_running_while_a_slow_search_runs(
    chaos_toml: Path, chaos_server: ChaosServer, tmp_path: Path
) -> None:
    """A subagent's catastrophic search must not stall other work in the same process."""
    root = _slow_ws(tmp_path)
    plan = {"steps": [{"id": "look", "kind": "code_search", "tier": "mini", "instruction": "LOOK"}]}
    mini = {"model": "mini-model", "has_tools": True}
    search = {"name": "search", "arguments": {"pattern": CATASTROPHIC, "path": "aaa.txt"}}
    chaos_server.set_script(
        plan_script(
            plan=plan,
            extra=[
                {"times": 1, "match": mini, "reply": {"tool_calls": [search]}},
                {"times": 1, "match": mini, "reply": {"text": "the search timed out"}},
            ],
        )
    )
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with Session(chaos_toml) as s:
        await s.call("warm up: open the ledger and the provider before the clock starts", kind="classify")
        tick = asyncio.create_task(ticker())
        try:
            result = await s.orchestrate("Find the TODOs", workspace=root, budget=1.0)
        finally:
            stop.set()
            await tick
    print(f"event loop: {len(gaps)} ticks, longest gap {max(gaps):.3f} s")
    assert max(gaps) < 1.0  # the 2 s search ran in a thread; the loop kept ticking
    assert [st["status"] for st in result.steps] == ["ok"]
    last = [r for r in chaos_server.requests("/v1/chat/completions") if r["model"] == "mini-model"][-1]
    tool_msgs = [m["content"] for m in last["body"]["messages"] if m["role"] == "tool"]
    assert "error: searching for '(a|aa)+$' took longer than 2 s" in tool_msgs[0]
