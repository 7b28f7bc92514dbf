"""ModelSpec: one model of the catalog, with its prices and what it can do."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tierwise.core import Capability, Tier, Usage


class ModelSpec(BaseModel):
    """A model tierwise may call. Prices are USD per 1M tokens; ``None`` means unknown."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="provider/name, unique in the catalog")
    provider: str
    name: str = Field(description="the model name sent to the provider")
    tier: Tier
    input_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    context_window: int = Field(default=128_000, gt=0)
    max_output_tokens: int = Field(default=4096, gt=0)
    capabilities: frozenset[Capability] = frozenset()
    notional: bool = Field(default=False, description="prices are stand-ins (local models)")
    rpm: int | None = Field(default=None, gt=0, description="requests per minute limit")
    # Where the prices come from: the shipped catalog, the user's [[models]], genai-prices' data (a model
    # named in the config that neither lists), or None when the prices are unknown.
    price_source: Literal["catalog", "user", "genai-prices"] | None = None

    @field_validator("input_per_mtok", "cached_input_per_mtok", "output_per_mtok")
    @classmethod
    def _non_negative(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError("prices must be >= 0")
        return v

    @field_validator("id")
    @classmethod
    def _id_has_provider(cls, v: str) -> str:
        if "/" not in v or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"model id {v!r} must look like 'provider/name'")
        return v

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def cost(self, usage: Usage) -> float | None:
        """USD for ``usage``; None when any needed price is unknown (never a silent 0)."""
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_price = self.cached_input_per_mtok
        if cached and cached_price is None:
            cached_price = self.input_per_mtok
        uncached = usage.input_tokens - cached
        total = uncached * self.input_per_mtok + usage.output_tokens * self.output_per_mtok
        if cached:
            total += cached * (cached_price or 0.0)
        return total / 1_000_000

    def worst_case_cost(self, input_tokens: int, max_output_tokens: int | None = None) -> float | None:
        """The reservation for a call: every input token uncached, every output token spent."""
        out = self.max_output_tokens if max_output_tokens is None else max_output_tokens
        return self.cost(Usage(input_tokens=input_tokens, output_tokens=out))
