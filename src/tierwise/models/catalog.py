"""The model catalog: the built-in data file, overridden or extended by the user's config."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any

from pydantic import ValidationError

from tierwise.core import Capability, Tier
from tierwise.errors import ConfigError, InputError
from tierwise.models.spec import ModelSpec


def load_builtin() -> list[ModelSpec]:
    text = resources.files("tierwise.models").joinpath("catalog.toml").read_text("utf-8")
    return [ModelSpec(**entry) for entry in tomllib.loads(text)["models"]]


def spec_from_config(entry: dict[str, Any], *, source: str, index: int) -> ModelSpec:
    """Build a ModelSpec from a ``[[models]]`` table, naming the file and key on error."""
    try:
        return ModelSpec(**entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "?"
        allowed = ", ".join(ModelSpec.model_fields)
        raise ConfigError(
            f"{source}: models[{index}].{key}: {first['msg']} (allowed keys: {allowed})"
        ) from None


class Catalog:
    """Models by id. Lookup accepts ``provider/name`` or a bare name when only one model has it."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._by_id: dict[str, ModelSpec] = {}
        for spec in specs:
            self._by_id[spec.id] = spec  # later entries (user config) override built-ins

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and self.find(model_id) is not None

    def find(self, model_id: str) -> ModelSpec | None:
        if model_id in self._by_id:
            return self._by_id[model_id]
        matches = [s for s in self._by_id.values() if model_id in (s.id.split("/", 1)[1], s.name)]
        return matches[0] if len(matches) == 1 else None

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
