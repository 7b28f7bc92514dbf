"""What a request asks of the router, and what the answer tells the client about the routing.

``model`` picks the target (``tierwise/auto``: the router decides; ``tierwise/large|mini|nano``: the
client pins a tier; a catalog id: the client pins a model); kind and stakes come from the body's
``metadata`` or ``x-tierwise-*`` headers. The answer's headers name the tier, model, cost and reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tierwise.core import Decision, Stakes, TaskKind, Tier, Usage
from tierwise.models.catalog import Catalog
from tierwise.runtime.result import Result
from tierwise.runtime.runtime import Stream
from tierwise.server.errors import ApiError

AUTO = "tierwise/auto"
TIER_MODELS = {f"tierwise/{t.value}": t for t in Tier}
_KINDS = ", ".join(k.value for k in TaskKind)
_STAKES = ", ".join(s.value for s in Stakes)
_UNSAFE = re.compile(r"[^\x20-\x7e]")  # header values: printable ASCII only (no CR/LF injection)


def target(model: str, catalog: Catalog) -> dict[str, Any]:
    """Task fields for the requested ``model``: none (auto), a pinned tier, or a pinned model."""
    if model == AUTO:
        return {}
    tier = TIER_MODELS.get(model)
    if tier is not None:
        return {"tier": tier}
    if model in catalog:
        return {"model": model}
    raise ApiError(
        404,
        f"the model {header_safe(model, 80)!r} does not exist: use tierwise/auto, "
        "tierwise/large|mini|nano or a model id listed by GET /v1/models",
        code="model_not_found",
        param="model",
    )


def describe(metadata: Mapping[str, str] | None, headers: Mapping[str, str]) -> dict[str, Any]:
    """The kind and stakes the client gave (metadata first, then headers); a bad value is a 400."""
    meta = metadata or {}
    out: dict[str, Any] = {}
    kind = meta.get("tierwise_kind") or headers.get("x-tierwise-kind")
    if kind:
        try:
            out["kind"] = TaskKind(kind.strip().lower())
        except ValueError:
            raise ApiError(
                400,
                f"unknown tierwise kind {header_safe(kind, 40)!r}: use one of {_KINDS}",
                code="invalid_value",
                param="metadata.tierwise_kind",
            ) from None
    stakes = meta.get("tierwise_stakes") or headers.get("x-tierwise-stakes")
    if stakes:
        try:
            out["stakes"] = Stakes(stakes.strip().lower())
        except ValueError:
            raise ApiError(
                400,
                f"unknown tierwise stakes {header_safe(stakes, 40)!r}: use one of {_STAKES}",
                code="invalid_value",
                param="metadata.tierwise_stakes",
            ) from None
    return out


_ASCII = str.maketrans({"→": "->", "—": "-", "–": "-", "…": "...", "≤": "<=", "≥": ">=", "×": "x"})


def header_safe(text: str, limit: int = 200) -> str:
    text = _UNSAFE.sub("?", text.translate(_ASCII))
    return text if len(text) <= limit else text[: limit - 1] + "~"


def decision_headers(decision: Decision, model: str) -> dict[str, str]:
    return {
        "x-tierwise-tier": decision.tier.value,
        "x-tierwise-model": header_safe(model),
        "x-tierwise-kind": decision.kind.value,
        "x-tierwise-reason": header_safe(decision.reason),
    }


def result_headers(result: Result) -> dict[str, str]:
    headers = decision_headers(result.decision, result.model)
    headers["x-tierwise-cost-usd"] = cost_text(result.cost_usd)
    return headers


def stream_headers(stream: Stream) -> dict[str, str]:
    """Headers of a started stream: its decision and model; its cost too when it was validated (and so
    paid) before the first byte (structured output, tools)."""
    assert stream.decision is not None and stream.model is not None
    headers = decision_headers(stream.decision, stream.model)
    if stream.result is not None:
        headers["x-tierwise-cost-usd"] = cost_text(stream.result.cost_usd)
    return headers


def cost_text(cost: float | None) -> str:
    return "unknown" if cost is None else f"{cost:.10f}".rstrip("0").rstrip(".") or "0"


def info(result: Result) -> dict[str, Any]:
    """What tierwise did, for the body's extra ``tierwise`` field (and a stream's usage chunk)."""
    return {
        "tier": result.decision.tier.value,
        "model": result.model,
        "kind": result.decision.kind.value,
        "reason": result.decision.reason,
        "cost_usd": result.cost_usd,
        "notional": result.notional,
        "run_id": result.run_id,
    }


def chat_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens, "audio_tokens": 0},
    }
