"""Prices for models the shipped catalog does not list, from the ``genai-prices`` package's bundled data.

Only the data shipped inside the installed package is read (``genai_prices.data``): never the package's
auto-updater, which fetches from GitHub. It is imported on the first lookup, not with tierwise, because
loading the data takes ~0.2 s and most runs never need it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tierwise.core import Capability, Tier
from tierwise.models.spec import ModelSpec

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot

SOURCE = "genai-prices"
# genai-prices has no capabilities; a modern chat model has these. A [[models]] entry says otherwise.
ASSUMED_CAPABILITIES = frozenset({Capability.TOOLS, Capability.JSON_SCHEMA})


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens, as genai-prices lists them today (tiered prices: the base tier)."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None
    context_window: int | None
    provider_id: str  # genai-prices' provider that priced it (e.g. "aws" for a bedrock/... model)
    model_id: str


@functools.cache
def _bundled() -> DataSnapshot:
    # The bundled list, not data_snapshot.get_snapshot(): that returns whatever UpdatePrices (another
    # library in the process, e.g. pydantic-ai) fetched from the network, if anything started it.
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False)


def _per_mtok(value: Any) -> float | None:
    base = getattr(value, "base", value)  # TieredPrices: the price below the first threshold
    return float(base) if isinstance(base, (Decimal, int, float)) else None


def _candidates(model_id: str) -> list[tuple[str, str]]:
    """(genai-prices provider, model ref) pairs to try for ``provider/name``, most specific first.

    ``litellm/bedrock/anthropic.claude-...`` (a LiteLLM model string under a provider of ours) is also
    tried as provider ``bedrock``; genai-prices maps LiteLLM's prefixes (bedrock, vertex_ai, gemini ...).
    """
    provider, _, name = model_id.partition("/")
    pairs = [(provider, name)]
    inner, sep, ref = name.partition("/")
    if sep and inner and ref:
        pairs.append((inner, ref))
    return pairs


def lookup(model_id: str, at: datetime | None = None) -> Price | None:
    """The price of ``provider/name`` in genai-prices' bundled data, or None when it has none.

    Matched only within a provider genai-prices knows: a bare model name could match another provider's
    model of that name, and a wrong price is worse than an unknown one.
    """
    from genai_prices.data_snapshot import find_provider_by_id

    snapshot = _bundled()
    when = at or datetime.now(tz=UTC)
    for provider_id, ref in _candidates(model_id):
        if not ref or find_provider_by_id(snapshot.providers, provider_id) is None:
            continue
        try:
            provider, model = snapshot.find_provider_model(ref, None, provider_id, None)
        except LookupError:
            continue
        prices = model.get_prices(when)
        inp, out = _per_mtok(prices.input_mtok), _per_mtok(prices.output_mtok)
        if inp is None or out is None:
            continue  # a partial price is no price: cost stays unknown, never a silent 0
        return Price(
            input_per_mtok=inp,
            output_per_mtok=out,
            cached_input_per_mtok=_per_mtok(prices.cache_read_mtok),
            context_window=model.context_window,
            provider_id=provider.id,
            model_id=model.id,
        )
    return None


def spec_for(model_id: str, tier: Tier, *, priced_only: bool = True) -> ModelSpec | None:
    """A ModelSpec for a model the catalog lacks: priced from genai-prices (``price_source`` says so), or
    unpriced (cost None) when ``priced_only`` is False. None when ``model_id`` is not ``provider/name``."""
    provider, _, name = model_id.partition("/")
    if not provider or not name or name.endswith("/"):
        return None
    price = lookup(model_id)
    if price is None and priced_only:
        return None
    fields: dict[str, Any] = {}
    if price is not None:
        fields = {
            "input_per_mtok": price.input_per_mtok,
            "cached_input_per_mtok": price.cached_input_per_mtok,
            "output_per_mtok": price.output_per_mtok,
            "price_source": SOURCE,
        }
        if price.context_window:
            fields["context_window"] = price.context_window
    return ModelSpec(
        id=model_id,
        provider=provider,
        name=name,
        tier=tier,
        capabilities=ASSUMED_CAPABILITIES,
        **fields,
    )
