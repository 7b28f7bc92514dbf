"""The proxy on the embedded default's model (SmolLM2 behind llama.cpp's own server): plain and streamed."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.server.conftest import serve

pytestmark = pytest.mark.local_model


def test_plain_and_streamed_on_the_embedded_model(tmp_path: Path, llama_server: str) -> None:
    path = tmp_path / "tierwise.toml"
    path.write_text(f"""
[ledger]
url = "sqlite:///{tmp_path}/ledger.db"
[providers.llamacpp]
kind = "openai"
base_url = "{llama_server}"
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
max_output_tokens = 24
[tiers]
large = "llamacpp/smollm2"
mini = "llamacpp/smollm2"
nano = "llamacpp/smollm2"
""")
    with serve(path) as served:
        client = openai.OpenAI(base_url=served.base_url, api_key="unused", max_retries=0, timeout=120)
        messages = [{"role": "user", "content": "Say hello."}]
        answer = client.chat.completions.create(model="tierwise/auto", messages=messages, max_tokens=16)  # type: ignore[arg-type]
        assert answer.model == "llamacpp/smollm2" and answer.choices[0].message.content
        chunks = list(
            client.chat.completions.create(
                model="tierwise/nano", messages=messages, max_tokens=16, stream=True
            )  # type: ignore[arg-type]
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        rows = served.calls("stream")
        assert len(rows) == 1 and rows[0].status == "ok" and rows[0].cost_usd is not None
