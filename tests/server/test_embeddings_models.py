"""POST /v1/embeddings (float and base64) and GET /v1/models with the openai SDK."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from tests.server.conftest import Served


def test_embeddings_float_and_base64(client: openai.OpenAI, proxy: Served) -> None:
    as_b64 = client.embeddings.create(model="chaos/embed", input=["first text", "second text"])  # SDK: base64
    as_float = client.embeddings.create(model="chaos/embed", input=["first text", "second text"],
                                        encoding_format="float")  # fmt: skip
    assert [d.index for d in as_b64.data] == [0, 1]
    assert len(as_float.data[0].embedding) == 64  # the chaos server's default dimension
    assert np.allclose(as_b64.data[0].embedding, as_float.data[0].embedding, atol=1e-6)
    assert as_float.model == "chaos/embed" and as_float.usage.prompt_tokens > 0
    rows = [r for r in proxy.calls("embed") if r.model == "chaos/embed"]
    assert len(rows) == 2 and all(r.status == "ok" for r in rows)


def test_embeddings_auto_uses_the_default_embedding_model(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model="tierwise/auto", input="a single string", encoding_format="float")
    assert len(one.data) == 1 and len(one.data[0].embedding) > 0


def test_embeddings_refusals(proxy: Served) -> None:
    url = proxy.base_url + "/embeddings"
    r = httpx.post(url, json={"model": "chaos/embed", "input": [[1, 2, 3]]})
    assert r.status_code == 400 and "token arrays" in r.json()["error"]["message"]
    r = httpx.post(url, json={"model": "chaos/large", "input": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:4] == ["tierwise/auto", "tierwise/large", "tierwise/mini", "tierwise/nano"]
    assert {"chaos/large", "chaos/mini", "chaos/nano", "chaos/embed"} <= set(ids)


@pytest.mark.parametrize("model", ["nope/model", "tierwise/huge"])
def test_unknown_model_is_404_naming_the_list(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError, match="GET /v1/models"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
