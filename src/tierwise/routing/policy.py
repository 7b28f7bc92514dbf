"""The declarative policy router, the default: who decides a task's tier, in order of precedence:

a user's pin (``Task(tier=...)``, ``--tier``) > ``[routing] rules`` > ``[routing] kinds`` > the tier hint a
plan or system gives (bounded by the kind: judgment kinds are never put on nano, mechanical kinds never
on large) > the default kind → tier table (``core.DEFAULT_TIER``). Then ambiguity and high stakes raise
the tier, and the input size and required capabilities move it up where a model cannot take the task.

Cheap by construction (a few dict lookups), because it runs before every call; p99 well under 1 ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tierwise.core import Decision, Stakes, Task, TaskKind, Tier, default_tier
from tierwise.errors import RoutingError
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.models.tokens import count_text
from tierwise.routing.base import CallFn
from tierwise.routing.kinds import KindInferrer, ambiguity_cues


@dataclass(frozen=True, slots=True)
class Rule:
    """User rule from tierwise.toml ``[[routing.rules]]``: first match wins over the kind table."""

    tier: Tier | None = None
    model: str | None = None
    kind: TaskKind | None = None
    contains: str | None = None
    stakes: Stakes | None = None
    reason: str | None = None

    def matches(self, task: Task, kind: TaskKind) -> bool:
        if self.kind is not None and self.kind is not kind:
            return False
        if self.stakes is not None and self.stakes is not task.stakes:
            return False
        return self.contains is None or self.contains.lower() in task.text.lower()

    def describe(self) -> str:
        if self.reason:
            return self.reason
        parts = [
            f"kind={self.kind.value}" if self.kind else "",
            f"contains={self.contains!r}" if self.contains else "",
        ]
        return "rule " + " ".join(p for p in parts if p)


# Kinds that need judgment: a nano hint on them is raised to the kind's own tier.
JUDGMENT_KINDS = frozenset(
    {
        TaskKind.PLAN,
        TaskKind.AMBIGUOUS,
        TaskKind.FINAL_QA,
        TaskKind.SYNTHESIS,
        TaskKind.DEBUG,
        TaskKind.CODE_EDIT,
        TaskKind.REVIEW_FILE,
        TaskKind.FRONTEND,
    }
)
# Mechanical kinds: a large hint on them is lowered to the kind's own tier.
MECHANICAL_KINDS = frozenset(
    {
        TaskKind.CLASSIFY,
        TaskKind.EXTRACT,
        TaskKind.RANK,
        TaskKind.VALIDATE,
        TaskKind.PREPROCESS,
        TaskKind.TOOL_OP,
        TaskKind.CODE_SEARCH,
    }
)


def bounded_hint(kind: TaskKind, hint: Tier, stakes: Stakes = Stakes.NORMAL) -> tuple[Tier, str]:
    """The tier a hint stands for once bounded by the kind, and why."""
    own = default_tier(kind, stakes)
    if hint is Tier.NANO and kind in JUDGMENT_KINDS and own is not Tier.NANO:
        return own, f"nano hint raised to {own.value}: a {kind.value} task needs judgment"
    if hint is Tier.LARGE and kind in MECHANICAL_KINDS and own is not Tier.LARGE:
        return own, f"large hint lowered to {own.value}: a {kind.value} task is mechanical"
    return hint, f"tier hint {hint.value} for a {kind.value} task"


class PolicyRouter:
    name = "policy"
    calls_model = False

    def __init__(
        self,
        catalog: Catalog,
        tiers: Mapping[Tier, str],
        *,
        kind_tiers: Mapping[TaskKind, Tier] | None = None,
        rules: Sequence[Rule] = (),
        ambiguity_threshold: float = 0.6,
        inferrer: KindInferrer | None = None,
    ) -> None:
        self.catalog = catalog
        self.tiers = {tier: catalog.get(model_id) for tier, model_id in tiers.items()}
        self.kind_tiers = dict(kind_tiers or {})
        self.rules = tuple(rules)
        self.ambiguity_threshold = ambiguity_threshold
        self.inferrer = inferrer

    async def route(self, task: Task, call: CallFn | None = None) -> Decision:
        """The router protocol; the policy needs no model call, so this is ``decide``."""
        return self.decide(task)

    def decide(self, task: Task) -> Decision:
        """The decision, synchronously (the hot path and offline replay use this directly)."""
        reasons: list[str] = []
        kind = task.kind
        ambiguity = task.ambiguity
        if kind is None:
            if self.inferrer is None:
                raise RoutingError("the task has no kind and no kind inferrer is set: pass kind=...")
            # A pinned model or tier is not routed on the kind, which is only recorded: the static
            # classifier's guess stands then, and no e5 embedding is computed for it.
            pinned_call = task.model is not None or task.tier is not None
            settled = self.inferrer.classify(task.text, settle=True) if pinned_call else None
            guess = settled or self.inferrer.infer(task.text)
            kind = guess.kind
            ambiguity = guess.ambiguity if ambiguity is None else ambiguity
            reasons.append(f"kind {kind.value} inferred from the text ({guess.describe()})")
        if task.model is not None:
            spec = self.catalog.get(task.model)
            return Decision(spec.tier, spec.id, "model pinned by the caller", kind, router=self.name)

        pinned: ModelSpec | None = None
        if task.tier is not None:
            tier = task.tier
            reasons.append(f"tier {tier.value} pinned by the caller")
        else:
            tier, pinned, why = self._base_tier(task, kind)
            reasons.append(why)
            if ambiguity is None:
                ambiguity = ambiguity_cues(task.text) if task.kind is None else 0.0
            if ambiguity >= self.ambiguity_threshold and tier is not Tier.LARGE:
                reasons.append(
                    f"ambiguity {ambiguity:.2f} >= {self.ambiguity_threshold:.2f} raises it to large"
                )
                tier, pinned = Tier.LARGE, None
            if task.stakes is Stakes.HIGH and tier is Tier.NANO:
                reasons.append("high stakes raise nano to mini")
                tier, pinned = Tier.MINI, None

        spec = pinned or self._model_for(tier)
        spec, tier = self._fit(task, spec, tier, reasons)
        alternatives = tuple(m.id for t, m in self.tiers.items() if m.id != spec.id)
        return Decision(tier, spec.id, "; ".join(reasons), kind, alternatives=alternatives, router=self.name)

    def _base_tier(self, task: Task, kind: TaskKind) -> tuple[Tier, ModelSpec | None, str]:
        for rule in self.rules:
            if rule.matches(task, kind):
                if rule.model is not None:
                    spec = self.catalog.get(rule.model)
                    return spec.tier, spec, f"{rule.describe()} → {spec.id}"
                assert rule.tier is not None
                return rule.tier, None, f"{rule.describe()} → {rule.tier.value}"
        if kind in self.kind_tiers:
            tier = self.kind_tiers[kind]
            return tier, None, f"kind {kind.value} → {tier.value} (tierwise.toml)"
        if task.tier_hint is not None:
            tier, why = bounded_hint(kind, task.tier_hint, task.stakes)
            return tier, None, why
        tier = default_tier(kind, task.stakes)
        if kind is TaskKind.SYNTHESIS:
            return tier, None, f"synthesis at {task.stakes.value} stakes → {tier.value}"
        return tier, None, f"kind {kind.value} → {tier.value} (default)"

    def _model_for(self, tier: Tier) -> ModelSpec:
        spec = self.tiers.get(tier)
        if spec is None:
            raise RoutingError(f"no model is mapped to tier {tier.value}: set [tiers] {tier.value} = ...")
        return spec

    def problems(self, task: Task, candidate: ModelSpec) -> list[str]:
        """Why ``candidate`` cannot take ``task`` (missing capabilities, input too large), if it cannot."""
        needed = task.needed_capabilities()
        found = []
        missing = needed - set(candidate.capabilities)
        if missing:
            found.append(f"{candidate.id} lacks {', '.join(sorted(c.value for c in missing))}")
        text = task.text
        out = min(task.max_output_tokens or candidate.max_output_tokens, candidate.max_output_tokens)
        # A token is at least one character for these encodings, so short texts skip the exact count.
        if len(text) + out > candidate.context_window:
            tokens = count_text(text)
            if tokens + out > candidate.context_window:
                found.append(
                    f"~{tokens} input tokens do not fit {candidate.id}'s {candidate.context_window} window"
                )
        return found

    def _fit(self, task: Task, spec: ModelSpec, tier: Tier, reasons: list[str]) -> tuple[ModelSpec, Tier]:
        """Keep ``spec`` if it can take the task, else move up the tiers until a model can."""
        first = self.problems(task, spec)
        if not first:
            return spec, tier
        reasons.extend(first)
        current = tier.up()
        while current is not None:
            candidate = self.tiers.get(current)
            if candidate is not None:
                issues = self.problems(task, candidate)
                if not issues:
                    reasons.append(f"moved up to {current.value} ({candidate.id}) to fit the task")
                    return candidate, current
                reasons.extend(issues)
            current = current.up()
        raise RoutingError(
            "no configured tier can take this task (" + "; ".join(reasons[-2:]) + "): "
            "shorten the input or map a larger-context / more capable model in [tiers]"
        )
