"""The embedded default end to end: no key, no network, SmolLM2 in process, e5 embeddings."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from tierwise import Session, SyncSession

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs the [local] extra"),
]


class Ticket(BaseModel):
    # Enums keep the tiny model's answer short: free strings run to the token limit, then get repaired.
    urgency: Literal["low", "normal", "high", "critical"]
    category: Literal["card", "account", "other"]


@pytest.fixture()
def offline_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = tmp_path / "tierwise.toml"
    path.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path}/ledger.db"\n')
    return path


async def test_offline_default_routes_answers_and_records(offline_toml: Path) -> None:
    async with Session(offline_toml) as s:
        assert s.config.offline
        result = await s.call(
            "Classify this support ticket by urgency: my card was stolen", schema=Ticket, max_output_tokens=40
        )
        assert isinstance(result.output, Ticket)
        assert result.tier == "nano" and result.model == "local/smollm2-nano"
        assert result.notional and result.cost_usd is not None and result.cost_usd > 0
        assert "inferred" in result.decision.reason
        assert s.ledger is not None
        await s.ledger.aflush()
        calls = s.ledger.calls(run_id=result.run_id)
    # The static classifier is sure of this kind (local CPU, no embed call); the tiny model may need a
    # repair round before "ok".
    assert "static classifier" in result.decision.reason
    assert calls[0].operation == "chat" and calls[-1].operation == "chat" and calls[-1].status == "ok"
    assert all(c.status in ("ok", "invalid_output") for c in calls)


async def test_tool_calls_are_grammar_constrained(offline_toml: Path) -> None:
    from tierwise.providers import ToolSpec

    tool = ToolSpec(
        "read_file",
        "Read a file of the workspace",
        {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    )
    async with Session(offline_toml) as s:
        task = s.task("Read the file README.md using the read_file tool.", kind="tool_op")
        from dataclasses import replace

        result = await s.call(replace(task, tools=(tool,)))
    # The grammar allows either a well-formed call of read_file or a plain answer, nothing else.
    assert result.tool_calls or result.text
    for call in result.tool_calls:
        assert call.name == "read_file"


def test_sync_session_and_embeddings(offline_toml: Path) -> None:
    with SyncSession(offline_toml) as s:
        emb = s.embed(["stolen card", "lost card", "weather today"])
        assert len(emb.vectors) == 3 and len(emb.vectors[0]) == 384
        d = s.route("Extract the order number from this email")
        assert d.tier.value == "nano" and d.kind.value == "extract"


def test_decode_threads_default_to_half_the_cpus_and_the_override_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from tierwise.errors import ProviderError
    from tierwise.providers.local import THREADS_ENV, decode_threads

    monkeypatch.delenv(THREADS_ENV, raising=False)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    assert decode_threads() == max(1, cpus // 2)
    monkeypatch.setenv(THREADS_ENV, "3")
    assert decode_threads() == 3
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(ProviderError, match=THREADS_ENV) as info:
            decode_threads()
        assert "\n" not in str(info.value)
