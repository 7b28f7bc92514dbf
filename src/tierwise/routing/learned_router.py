"""The learned router deployed: a ``LearnedModel`` behind the ``Router`` protocol, on a user's catalog."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tierwise.core import Capability, Decision, Task, TaskKind, Tier
from tierwise.errors import ConfigError, RoutingError
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.routing.base import CallFn
from tierwise.routing.learned_model import LearnedModel
from tierwise.routing.policy import PolicyRouter

log = logging.getLogger(__name__)


class LearnedRouter:
    """A ``LearnedModel`` deployed on a catalog: trained model names map to catalog ids.

    Catalog models the router was not trained on are never picked by it; tasks none of the mapped models
    can take (pinned to another model or tier, or needing a capability they lack) go to ``fallback``, and
    so do tasks where the predicted quality of its own pick is below ``min_confidence`` (a prompt unlike
    anything it trained on, where the policy's rules are the safer bet).
    """

    name = "learned"

    def __init__(
        self,
        model: LearnedModel,
        catalog: Catalog,
        mapping: Mapping[str, str] | None = None,
        *,
        fallback: PolicyRouter | None = None,
        lam: float | None = None,
        min_confidence: float | None = None,
    ) -> None:
        self.model = model
        self.catalog = catalog
        self.fallback = fallback
        self.min_confidence = min_confidence
        self.lam = model.lam if lam is None else lam
        mapping = dict(mapping) if mapping is not None else {m: m for m in model.models if m in catalog}
        unknown = sorted(set(mapping) - set(model.models))
        if unknown:
            raise ConfigError(
                f"learned router mapping names models it was not trained on: {unknown}; "
                f"trained on: {list(model.models)}"
            )
        self.specs: dict[int, ModelSpec] = {
            model.models.index(trained): catalog.get(target) for trained, target in mapping.items()
        }
        if not self.specs:
            raise ConfigError(
                f"none of the learned router's models {list(model.models)} maps to the catalog: "
                "give a mapping such as {'gpt-4-1106-preview': 'openai/gpt-5.4'}"
            )
        self._all = np.array(sorted(self.specs), dtype=np.int64)
        covered = {s.id for s in self.specs.values()}
        untrained = sorted(s.id for s in catalog if s.id not in covered and not s.has(Capability.EMBEDDINGS))
        if untrained:
            warnings.warn(
                f"learned router was not trained on {', '.join(untrained)}: tasks that need them go to the "
                f"{getattr(fallback, 'name', 'fallback')} router",
                stacklevel=2,
            )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        catalog: Catalog,
        mapping: Mapping[str, str] | None = None,
        *,
        fallback: PolicyRouter | None = None,
        min_confidence: float | None = None,
    ) -> LearnedRouter:
        """What ``[routing] learned_model = FILE`` deploys: a saved model on the user's catalog."""
        return cls(
            LearnedModel.load(path), catalog, mapping, fallback=fallback, min_confidence=min_confidence
        )

    calls_model = False

    async def route(self, task: Task, call: CallFn | None = None) -> Decision:
        return self.decide(task)

    def decide(self, task: Task, vector: np.ndarray | None = None) -> Decision:
        """The decision; pass the task's embedding when it is known (the part that stays under 1 ms)."""
        if vector is None:
            vector = self.model.features([task.text], cache=False)[0]
        return self._decide(task, vector)

    def predicted_quality(self, text: str, model_id: str) -> float:
        """The predicted quality of catalog model ``model_id`` on ``text`` (0 for a model not trained on):
        the cascade's ``learned`` validator."""
        for j, spec in self.specs.items():
            if spec.id == model_id:
                return float(self.model.predict(self.model.features([text], cache=False)[0])[0][j])
        return 0.0

    def _decide(self, task: Task, vector: np.ndarray) -> Decision:
        decision = self._learned_decision(task, vector)
        floor = self.min_confidence
        confidence = decision.confidence or 0.0
        if (
            floor is not None
            and self.fallback is not None
            and decision.router == self.name
            and confidence < floor
        ):
            # Expected on unfamiliar prompts, so not a warning: the reason in the ledger says it.
            return self._fall_back(
                task,
                f"predicted quality {confidence:.2f} for {decision.model} is below {floor:.2f}",
                quiet=True,
            )
        return decision

    def _learned_decision(self, task: Task, vector: np.ndarray) -> Decision:
        plain = task.model is None and task.tier is None and not task.requires and not task.tools
        plain = plain and task.output_schema is None and task.json_schema is None
        cols = self._all if plain else np.array(self._eligible(task), dtype=np.int64)
        if len(cols) == 0:
            return self._fall_back(task, "no model it was trained on can take this task")
        q = self.model.predict(vector)[0]
        cost = self.model.norm_costs[cols]
        if self.model.threshold is not None:
            return self._by_threshold(task, q, cols)
        if np.isinf(self.lam):
            order = np.argsort(cost, kind="stable")
        else:
            # Ties (equal utility) go to the cheaper model: a hair of extra cost breaks them.
            order = np.argsort(-(q[cols] - (self.lam + 1e-9) * cost), kind="stable")
        ranked = cols[order]
        best = int(ranked[0])
        spec = self.specs[best]
        lam = "inf" if np.isinf(self.lam) else f"{self.lam:.3g}"
        reason = f"learned: predicted quality {q[best]:.2f} for {spec.id} at λ={lam}"
        if len(ranked) > 1:
            reason += f" (next: {self.specs[int(ranked[1])].id} {q[int(ranked[1])]:.2f})"
        return Decision(
            tier=spec.tier,
            model=spec.id,
            reason=reason,
            kind=task.kind or kind_for_tier(spec.tier),
            confidence=float(q[best]),
            alternatives=tuple(self.specs[int(j)].id for j in ranked[1:]),
            router=self.name,
        )

    def _by_threshold(self, task: Task, q: np.ndarray, cols: np.ndarray) -> Decision:
        tau = float(self.model.threshold or 0.0)
        cols = cols[np.argsort(self.model.costs[cols], kind="stable")]  # cheapest first
        clears = [int(j) for j in cols if q[j] >= tau]
        best = clears[0] if clears else int(cols[np.argmax(q[cols])])
        spec = self.specs[best]
        verdict = f"clears τ={tau:.2f}" if clears else f"none clears τ={tau:.2f}: the best predicted"
        below = ", ".join(f"{self.specs[int(j)].id} {q[int(j)]:.2f}" for j in cols if int(j) != best)
        reason = f"learned: predicted quality {q[best]:.2f} for {spec.id} ({verdict})"
        return Decision(
            tier=spec.tier,
            model=spec.id,
            reason=reason + (f"; others: {below}" if below else ""),
            kind=task.kind or kind_for_tier(spec.tier),
            confidence=float(q[best]),
            alternatives=tuple(self.specs[int(j)].id for j in cols if int(j) != best),
            router=self.name,
        )

    def _eligible(self, task: Task) -> list[int]:
        needed = task.needed_capabilities()
        out = []
        for j, spec in self.specs.items():
            if task.model is not None and self.catalog.find(task.model) is not spec:
                continue
            if task.tier is not None and spec.tier is not task.tier:
                continue
            if needed - set(spec.capabilities):
                continue
            out.append(j)
        return out

    def _fall_back(self, task: Task, why: str, *, quiet: bool = False) -> Decision:
        if self.fallback is None:
            raise RoutingError(f"learned router: {why}, and no fallback router is configured")
        (log.debug if quiet else log.warning)(
            "learned router: %s; using the %s router", why, self.fallback.name
        )
        d = self.fallback.decide(task)
        return Decision(
            d.tier,
            d.model,
            f"learned: {why}; {self.fallback.name}: {d.reason}",
            d.kind,
            d.confidence,
            d.alternatives,
            d.router,
        )


def kind_for_tier(tier: Tier) -> TaskKind:
    """A task without a kind is recorded under a representative kind of the tier it was routed to."""
    return {Tier.LARGE: TaskKind.AMBIGUOUS, Tier.MINI: TaskKind.TOOL_OP, Tier.NANO: TaskKind.PREPROCESS}[tier]
