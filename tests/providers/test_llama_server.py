"""The openai adapter against llama.cpp's real OpenAI-compatible server (SmolLM2 on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from tierwise import Session

pytestmark = pytest.mark.local_model


class Urgency(BaseModel):
    urgency: str


def _toml(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(f"""
[ledger]
url = "sqlite:///{tmp_path}/ledger.db"
[providers.llamacpp]
kind = "openai"
base_url = "{base_url}"
api_key_env = "LLAMACPP_KEY"
timeout_s = 120
[[models]]
id = "llamacpp/smollm2"
provider = "llamacpp"
name = "smollm2"
tier = "nano"
input_per_mtok = 0.20
output_per_mtok = 1.25
context_window = 2048
max_output_tokens = 48
capabilities = ["json_schema"]
[tiers]
large = "llamacpp/smollm2"
mini = "llamacpp/smollm2"
nano = "llamacpp/smollm2"
""")
    return path


async def test_structured_output_is_translated_for_llama_cpp(tmp_path: Path, llama_server: str) -> None:
    # llama_cpp.server rejects response_format=json_schema; the adapter learns to send json_object + schema.
    async with Session(_toml(tmp_path, llama_server)) as s:
        result = await s.call(
            "How urgent is a stolen card? Answer low or high.", kind="classify", schema=Urgency
        )
        assert isinstance(result.output, Urgency)
        assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
        assert result.served_model  # the model name the server reported
        provider = s.providers.get("llamacpp") if s.providers else None
        assert provider is not None and provider._structured == "json_object"  # type: ignore[attr-defined]
        second = await s.call(
            "How urgent is a lost PIN? Answer low or high.", kind="classify", schema=Urgency
        )
        assert isinstance(second.output, Urgency)


async def test_plain_text_and_stream(tmp_path: Path, llama_server: str) -> None:
    async with Session(_toml(tmp_path, llama_server)) as s:
        result = await s.call("Say hello.", kind="classify", max_output_tokens=8)
        assert result.text and result.cost_usd is not None and result.cost_usd > 0
        async with s.run("stream") as run:
            parts = [
                d async for d in s.stream("Count to three.", run=run, kind="classify", max_output_tokens=8)
            ]
        assert "".join(parts)
        assert s.ledger is not None
        await s.ledger.aflush()
        calls = s.ledger.calls(run_id=run.id)
        assert [c.operation for c in calls] == ["stream"] and calls[0].output_tokens > 0
