"""The model catalog: the built-in data file, overridden or extended by the user's config."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from typing import Any

from pydantic import ValidationError

from tierwise.core import Capability, Tier
from tierwise.errors import ConfigError, InputError
from tierwise.models.spec import ModelSpec

# A model id the catalog does not list → a spec for it (or None), given the tier it serves if known.
Resolver = Callable[[str, Tier | None], ModelSpec | None]


def _priced(entry: dict[str, Any], source: str) -> str | None:
    return source if entry.get("input_per_mtok") is not None else None


def load_builtin() -> list[ModelSpec]:
    text = resources.files("tierwise.models").joinpath("catalog.toml").read_text("utf-8")
    return [ModelSpec(**{**e, "price_source": _priced(e, "catalog")}) for e in tomllib.loads(text)["models"]]


def spec_from_config(entry: dict[str, Any], *, source: str, index: int) -> ModelSpec:
    """Build a ModelSpec from a ``[[models]]`` table, naming the file and key on error."""
    try:
        return ModelSpec(**{**entry, "price_source": _priced(entry, "user")})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "?"
        allowed = ", ".join(ModelSpec.model_fields)
        raise ConfigError(
            f"{source}: models[{index}].{key}: {first['msg']} (allowed keys: {allowed})"
        ) from None


class Catalog:
    """Models by id. Lookup accepts ``provider/name`` or a bare name when only one model has it.

    An id it does not list goes to ``resolver`` (the config's: genai-prices' data, or an unpriced LiteLLM
    model), once; what that yields is found by id but is not a member (not listed, not a tier sibling)
    unless ``add``ed, as the config does for the models [tiers] maps.
    """

    def __init__(self, specs: Iterable[ModelSpec], resolver: Resolver | None = None) -> None:
        self._by_id: dict[str, ModelSpec] = {}
        for spec in specs:
            self._by_id[spec.id] = spec  # later entries (user config) override built-ins
        self._resolver = resolver
        self._resolved: dict[str, ModelSpec | None] = {}

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and self.find(model_id) is not None

    def find(self, model_id: str, tier: Tier | None = None) -> ModelSpec | None:
        """The spec for ``model_id``; ``tier`` is the tier an unlisted model serves (the first lookup of
        an id decides it: the config resolves the ids it names before anything runs)."""
        if model_id in self._by_id:
            return self._by_id[model_id]
        matches = [s for s in self._by_id.values() if model_id in (s.id.split("/", 1)[1], s.name)]
        if matches:
            return matches[0] if len(matches) == 1 else None
        if self._resolver is None:
            return None
        if model_id not in self._resolved:
            self._resolved[model_id] = self._resolver(model_id, tier)
        return self._resolved[model_id]

    def add(self, spec: ModelSpec) -> None:
        """Make ``spec`` a member (listed, a sibling in its tier); a listed id keeps its entry."""
        self._by_id.setdefault(spec.id, spec)

    def get(self, model_id: str) -> ModelSpec:
        spec = self.find(model_id)
        if spec is not None:
            return spec
        bare = [s.id for s in self._by_id.values() if model_id in (s.id.split("/", 1)[1], s.name)]
        if len(bare) > 1:
            raise InputError(f"model {model_id!r} is ambiguous: use one of {', '.join(bare)}")
        raise InputError(
            f"unknown model {model_id!r}: run `tierwise models` for the catalog, "
            "or add it under [[models]] in tierwise.toml"
        )

    def in_tier(self, tier: Tier) -> list[ModelSpec]:
        return [s for s in self._by_id.values() if s.tier is tier]

    def with_capability(self, capability: Capability) -> list[ModelSpec]:
        return [s for s in self._by_id.values() if s.has(capability)]
