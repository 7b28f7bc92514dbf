"""``POST /v1/embeddings``: strings in, vectors out (float or base64, as the openai SDK asks by default)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tierwise.core import Capability, TaskKind
from tierwise.runtime.runtime import EMBED_MODEL
from tierwise.server.body import parse, read_json
from tierwise.server.errors import ApiError
from tierwise.server.jsonio import JSONBody
from tierwise.server.proxy import Proxy, answering
from tierwise.server.schemas import EmbeddingsRequest
from tierwise.server.target import AUTO, cost_text


def _model(name: str, proxy: Proxy) -> str | None:
    """The catalog embedding model to use; ``None`` is the runtime's default (tierwise/auto)."""
    if name == AUTO:
        return None
    spec = proxy.catalog.find(name)
    if spec is None or not spec.has(Capability.EMBEDDINGS):
        raise ApiError(
            404,
            f"the embedding model {name[:80]!r} does not exist: use tierwise/auto or a model with the "
            "embeddings capability from GET /v1/models",
            code="model_not_found",
            param="model",
        )
    return spec.id


def _token_arrays(data: Any) -> bool:
    raw = data.get("input") if isinstance(data, dict) else None
    return isinstance(raw, list) and any(not isinstance(x, str) for x in raw)


def _encode(vec: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vec
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()


def routes(proxy: Proxy) -> list[Route]:
    @answering
    async def embeddings(request: Request) -> Response:
        caller = await proxy.admit(request)
        data = await read_json(request, proxy.max_body_bytes)
        if _token_arrays(data):
            raise ApiError(
                400,
                "input as token arrays is not supported: send a string or a list of strings",
                param="input",
            )
        body = parse(EmbeddingsRequest, data)
        if body.dimensions is not None:
            raise ApiError(
                400,
                "dimensions is not supported: leave it out (vectors come at the model's size)",
                param="dimensions",
            )
        texts = [body.input] if isinstance(body.input, str) else body.input
        if any(not t for t in texts):
            raise ApiError(
                400, "input holds an empty string: every text to embed must be non-empty", param="input"
            )
        model = _model(body.model, proxy)
        async with proxy.gate.scope(caller) as scope:
            emb = await scope.embed(texts, model=model, kind=TaskKind.PREPROCESS, reason="proxy embeddings")
        served = model or EMBED_MODEL  # what the runtime embeds with when no model is named
        as_b64 = body.encoding_format == "base64"
        usage = {"prompt_tokens": emb.usage.input_tokens, "total_tokens": emb.usage.input_tokens}
        payload = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _encode(v, as_b64)}
                for i, v in enumerate(emb.vectors)
            ],
            "model": served,
            "usage": usage,
        }
        spec = proxy.catalog.get(served)
        cost = spec.cost(emb.usage)
        headers = {
            "x-tierwise-tier": spec.tier.value,
            "x-tierwise-model": served,
            "x-tierwise-cost-usd": cost_text(cost),
            "x-tierwise-reason": "embeddings",
        }
        return JSONBody(payload, headers=headers)

    return [Route("/v1/embeddings", embeddings, methods=["POST"])]
