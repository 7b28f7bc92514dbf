"""Cascade routing (``cascade+``) on live calls: a ``CascadeRoutingModel`` behind the ``Router`` protocol.

For a task the router reads the prompt (the learned router's q̂ per model and the lexical features) and
names the first model of the plan's vote: the cheap models in the plan's order (cheapest first, the best
of them last), or the best cheap model alone when its q̂ clears ``alone_at``. It hands the runtime the
rest of the vote and the escalation model with ``VoteCheck``; the runtime's escalation loop buys the
vote's answers (``Escalation.votes``), the check judges them with the plan's risk model through
``cascade_routing.assess`` (the function replay decides with), and the call either returns the vote's
pick (the agreeing model predicted best, maybe not the latest answer) or escalates. Tasks it cannot take
(a caller's pin, a capability or context window one of its models lacks) go to the fallback router (the
policy).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from tierwise.core import Decision, Escalation, Task
from tierwise.errors import ConfigError, RoutingError
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.routing.base import CallFn
from tierwise.routing.cascade import normalize_answer
from tierwise.routing.cascade_model import CascadeRoutingModel
from tierwise.routing.cascade_routing import RoutingPlan, Signals, assess, p_right_needed
from tierwise.routing.learned_router import kind_for_tier
from tierwise.routing.policy import PolicyRouter

log = logging.getLogger(__name__)


class VoteCheck:
    """The plan's verdict on the answers one task bought: an ``AnswerCheck`` plus the vote's ``pick``.

    The confidence is the risk model's P(the vote's answer is right); the runtime escalates below ``tau``
    (``p_right_needed``), exactly where ``assess`` says the score clears the threshold. Answers that are
    not the plan's vote (a model fell back to another, an invalid answer was skipped) get confidence 0,
    so the escalation model answers, and ``pick`` returns the latest answer for them.
    """

    name = "cascade+"

    def __init__(
        self,
        plan: RoutingPlan,
        columns: Mapping[str, int],
        vote: Sequence[int],
        q: np.ndarray,
        lex: np.ndarray,
        tau: float,
    ) -> None:
        self.plan, self.columns, self.vote = plan, columns, list(vote)
        self.q, self.lex, self.tau = q, lex, tau
        self._memo: dict[tuple[tuple[str, str], ...], tuple[int, bool, float | None] | None] = {}

    def verdict(self, answers: Sequence[tuple[str, str]]) -> tuple[int, bool, float | None] | None:
        """(model column whose answer is returned, escalate?, P(right)), or None: not the plan's vote."""
        key = tuple(answers)
        if key not in self._memo:
            self._memo[key] = self._verdict(answers)
        return self._memo[key]

    def _verdict(self, answers: Sequence[tuple[str, str]]) -> tuple[int, bool, float | None] | None:
        cols = [self.columns.get(model) for model, _ in answers]
        if cols != self.vote:
            return None
        m = len(self.q)
        codes = -1 - np.arange(m)  # answers not bought: each its own, agreeing with nothing
        seen: dict[str, int] = {}
        for j, (_, text) in zip(self.vote, answers, strict=True):
            codes[j] = seen.setdefault(normalize_answer(text), len(seen))
        v = assess(self.plan, Signals(codes[None, :], self.q[None, :], self.lex[None, :]))
        p = None if v.p_right is None else float(v.p_right[0])
        return int(v.answer[0]), bool(v.escalated[0]), p

    async def confidence(self, task: Task, answers: Sequence[tuple[str, str]], call: CallFn) -> float:
        v = self.verdict(answers)
        if v is None:
            return 0.0
        _, escalate, p = v
        if p is None:
            return 1.0  # a plan that never escalates (the runtime does not ask it)
        # The verdict decides; P(right) is reported, kept on the verdict's side of τ to the last bit.
        if escalate and not p < self.tau:
            return float(np.nextafter(self.tau, -np.inf))
        if not escalate and p < self.tau:
            return self.tau
        return p

    def pick(self, answers: Sequence[tuple[str, str]]) -> int:
        v = self.verdict(answers)
        return len(answers) - 1 if v is None else self.vote.index(v[0])


class CascadeRoutingRouter:
    """A ``CascadeRoutingModel`` deployed on a catalog: its model columns map to catalog ids.

    ``mapping`` (trained model name → catalog id; by default the names the catalog knows) must cover
    every model the plan may buy; a task the router cannot take goes to ``fallback``.
    """

    name = "cascade+"
    calls_model = False  # the answers it buys are the call's own escalation steps, not routing calls

    def __init__(
        self,
        model: CascadeRoutingModel,
        catalog: Catalog,
        mapping: Mapping[str, str] | None = None,
        *,
        fallback: PolicyRouter | None = None,
        fits: Callable[[Task, ModelSpec], list[str]] | None = None,
    ) -> None:
        self.model, self.catalog, self.fallback = model, catalog, fallback
        self.fits = fits if fits is not None else (fallback.problems if fallback is not None else None)
        names = model.models
        mapping = dict(mapping) if mapping is not None else {m: m for m in names if m in catalog}
        unknown = sorted(set(mapping) - set(names))
        if unknown:
            raise ConfigError(
                f"cascade+ router mapping names models it was not trained on: {unknown}; "
                f"trained on: {list(names)}"
            )
        plan = model.plan
        used = [*plan.cheap, *([plan.escalate] if plan.escalate is not None else [])]
        self.specs: dict[int, ModelSpec] = {}
        for j in used:
            target = mapping.get(names[j])
            spec = self.catalog.find(target) if target is not None else None
            if spec is None:
                raise ConfigError(
                    f"cascade+ router: its model {names[j]!r} has no catalog model"
                    + (f" ({target!r} is not one)" if target is not None else "")
                    + f": map it, e.g. routing.learned_mapping = {{{names[j]!r} = 'provider/model'}}"
                )
            self.specs[j] = spec
        ids = [s.id for s in self.specs.values()]
        if len(set(ids)) != len(ids):
            raise ConfigError(
                f"cascade+ router: its models {[names[j] for j in used]} map to {ids}: a vote and its "
                "escalation need distinct catalog models"
            )
        self.columns = {spec.id: j for j, spec in self.specs.items()}
        self.escalates = (
            plan.escalate is not None and bool(plan.cheap) and bool(plan.risk) and plan.threshold < np.inf
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        catalog: Catalog,
        mapping: Mapping[str, str] | None = None,
        *,
        fallback: PolicyRouter | None = None,
    ) -> CascadeRoutingRouter:
        """What ``[routing] router = "cascade+"`` deploys: a saved model on the user's catalog."""
        return cls(CascadeRoutingModel.load(path), catalog, mapping, fallback=fallback)

    async def route(self, task: Task, call: CallFn | None = None) -> Decision:
        return self.decide(task)

    def decide(self, task: Task) -> Decision:
        if task.model is not None or task.tier is not None:
            return self._fall_back(task, "the caller pinned the task", quiet=True)
        problems = [p for spec in self.specs.values() for p in (self.fits(task, spec) if self.fits else [])]
        if problems:
            return self._fall_back(task, "; ".join(problems))
        plan = self.model.plan
        q, lex = self.model.predict(task.text)
        if not plan.cheap:
            assert plan.escalate is not None
            return self._decision(task, [plan.escalate], q, "cascade+: one model for every prompt")
        best = plan.cheap[-1]
        alone = len(plan.cheap) > 1 and bool(q[best] >= plan.alone_at)
        vote = [best] if alone else list(plan.cheap)
        short = lambda j: self.specs[j].id  # noqa: E731 - a one-line lookup
        if alone:
            reason = f"cascade+: q̂ {q[best]:.2f} for {short(best)} ≥ {plan.alone_at:.2f}: its answer alone"
        else:
            bought = ", ".join(f"{short(j)} (q̂ {q[j]:.2f})" for j in vote)
            reason = f"cascade+: a vote of {bought}, bought in that order"
            if len(plan.cheap) > 1 and np.isfinite(plan.alone_at):
                reason += f" (q̂ of {short(best)} < {plan.alone_at:.2f}: not trusted alone)"
        chain = [self.specs[j].id for j in vote[1:]]
        check = None
        if self.escalates:
            assert plan.escalate is not None
            tau = p_right_needed(plan, float(q[plan.escalate]))
            check = VoteCheck(plan, self.columns, vote, q, lex, tau)
            chain.append(self.specs[plan.escalate].id)
            up = short(plan.escalate)
            if plan.score == "risk":
                rule = f"the vote's risk exceeds {plan.threshold:.3f}"
            else:
                rule = f"{up}'s predicted gain over the vote's answer exceeds {plan.threshold:.3f}"
            reason += (
                f"; escalates to {up} when {rule}, i.e. when P(the vote's answer is right) < {tau:.2f} "
                f"(risk model on {plan.features} features)"
            )
        elif len(vote) > 1:
            check = VoteCheck(plan, self.columns, vote, q, lex, -np.inf)
            reason += "; never escalates"
        if len(vote) > 1:
            reason += "; returns the answer of the agreeing model predicted best"
        escalation = None
        if check is not None:
            escalation = Escalation(tuple(chain), check, check.tau, votes=len(vote), pick=check.pick)
        return self._decision(task, vote, q, reason, escalation)

    def _decision(
        self,
        task: Task,
        vote: list[int],
        q: np.ndarray,
        reason: str,
        escalation: Escalation | None = None,
    ) -> Decision:
        first = self.specs[vote[0]]
        return Decision(
            tier=first.tier,
            model=first.id,
            reason=reason,
            kind=task.kind or kind_for_tier(first.tier),
            confidence=float(q[vote[-1]]),
            alternatives=escalation.chain if escalation is not None else (),
            router=self.name,
            escalation=escalation,
        )

    def _fall_back(self, task: Task, why: str, *, quiet: bool = False) -> Decision:
        if self.fallback is None:
            raise RoutingError(f"cascade+ router: {why}, and no fallback router is configured")
        (log.debug if quiet else log.warning)(
            "cascade+ router: %s; using the %s router", why, self.fallback.name
        )
        d = self.fallback.decide(task)
        return Decision(
            d.tier, d.model, f"cascade+: {why}; {self.fallback.name}: {d.reason}", d.kind, d.confidence,
            d.alternatives, d.router,
        )  # fmt: skip
