"""Live API checks: run only when a key is set (never in CI without one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from tierwise import Session

pytestmark = pytest.mark.live


class Answer(BaseModel):
    answer: int


@pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="OPENAI_API_KEY not set")
async def test_openai_nano_structured(tmp_path: Path) -> None:
    toml = tmp_path / "tierwise.toml"
    toml.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path}/l.db"\n')
    async with Session(toml) as s:
        result = await s.call("What is 2+3?", kind="classify", schema=Answer)
    assert result.output.answer == 5 and result.model == "openai/gpt-5.4-nano" and result.cost_usd


@pytest.mark.skipif(not os.environ.get("ANTHROPIC_API_KEY"), reason="ANTHROPIC_API_KEY not set")
async def test_anthropic_structured(tmp_path: Path) -> None:
    toml = tmp_path / "tierwise.toml"
    toml.write_text(
        f'[ledger]\nurl = "sqlite:///{tmp_path}/l.db"\n[tiers]\nnano = "anthropic/claude-haiku-4-5"\n'
    )
    async with Session(toml) as s:
        result = await s.call("What is 2+3?", kind="classify", schema=Answer)
    assert result.output.answer == 5 and result.cost_usd
