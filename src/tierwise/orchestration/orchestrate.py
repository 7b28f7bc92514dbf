"""``orchestrate``: plan on large, execute the DAG on mini/nano subagents, QA and synthesize on large.

The plan is stored as the run's ``__plan__`` step and every finished step is durable before its
dependents start, so a scope opened to resume the run (``scope.finished``) reloads both and pays only for
what is left. The router decides every step: a step carries its kind, ambiguity and at most a tier hint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tierwise.core import Decision, Task
from tierwise.errors import BudgetExceeded, InputError, InvalidOutput
from tierwise.models.tokens import count_text
from tierwise.orchestration.executor import EventFn, ExecLimits, Executor, StepOutcome, step_task
from tierwise.orchestration.plan import FINAL_STEP, PLAN_STEP, Plan, PlanLimits, validate_plan
from tierwise.orchestration.planner import make_plan
from tierwise.orchestration.spend import estimate_overhead, measured_overhead, merge_siblings
from tierwise.orchestration.synthesis import synthesize
from tierwise.runtime.result import Result
from tierwise.runtime.runtime import Runtime
from tierwise.runtime.scope import FanOut, Scope, StepRecord
from tierwise.tools import Workspace, workspace_tools

RUN_KIND = "orchestrate"
MAX_LISTING = 200  # workspace paths shown to the planner


@dataclass(slots=True)
class OrchestrationResult:
    run_id: str
    goal: str
    answer: str
    steps: list[dict[str, Any]]
    spend: dict[str, Any]
    fallback_plan: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    overhead: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "goal": self.goal,
            "answer": self.answer,
            "steps": self.steps,
            "total_cost_usd": self.spend.get("total_cost_usd"),
            "cost_per_tier": self.spend.get("cost_per_tier", {}),
            "cost_per_step": self.spend.get("cost_per_step", {}),
            "all_large_counterfactual_usd": self.spend.get("all_large_counterfactual_usd"),
            "notional": self.spend.get("notional", False),
            "fallback_plan": self.fallback_plan,
            "overhead": self.overhead,
            "warnings": self.warnings,
            "notes": self.notes,
            "resumed": self.resumed,
        }


@dataclass(frozen=True, slots=True)
class Options:
    """Knobs of one orchestration, with defaults that suit most goals."""

    exec_limits: ExecLimits = field(default_factory=ExecLimits)
    plan_limits: PlanLimits = field(default_factory=PlanLimits)
    max_reruns: int = 1
    overhead_threshold: float = 1.0  # orchestration tokens per execution token that triggers the guard


def _listing(ws: Workspace) -> str:
    files = ws.files(".")
    paths = [ws.rel(p.resolve()) for p in files[:MAX_LISTING]]
    if len(files) > MAX_LISTING:
        paths.append(f"... and {len(files) - MAX_LISTING} more")
    return "\n".join(paths) or "(empty workspace)"


def check_goal(runtime: Runtime, goal: str) -> None:
    """A goal must be words, and fit the large model's window (else: put the material in a workspace)."""
    if not isinstance(goal, str) or not goal.strip():
        raise InputError('the goal is empty: say what to do, e.g. "Summarize the TODOs in this repo"')
    large = runtime.large_model()
    if large is None:
        return
    room = large.context_window - min(large.max_output_tokens, large.context_window // 2)
    n = count_text(goal) if len(goal) > room else 0  # a token is at least a character: skip short goals
    if n > room:
        raise InputError(
            f"the goal is ~{n} tokens but the large model {large.id} takes {room} input tokens: shorten "
            "the goal, or put the material in a workspace and pass --workspace"
        )


async def orchestrate(
    scope: Scope,
    goal: str = "",
    *,
    workspace: str | Path | None = None,
    options: Options | None = None,
    on_event: EventFn | None = None,
) -> OrchestrationResult:
    """Plan, execute and synthesize ``goal`` in ``scope``; a scope that resumes a run (its finished steps
    hold ``__plan__``) continues that plan and pays only for the steps left."""
    opts = options or Options()
    stored = scope.finished.get(PLAN_STEP)
    if scope.finished and (stored is None or not stored.output):
        raise InputError(f"run {scope.id} has no stored plan: only orchestrations can be resumed")
    if stored is not None:
        goal = str(stored.metadata.get("goal", scope.label))
        workspace = workspace or stored.metadata.get("workspace")
    elif not isinstance(goal, str) or not goal.strip():
        raise InputError('the goal is empty: say what to do, e.g. "Summarize the TODOs in this repo"')
    ws = Workspace(Path(workspace)) if workspace is not None else None
    tools = workspace_tools(ws) if ws is not None else ()
    limits = opts.exec_limits
    scope.fan_out = FanOut(per_tier=limits.per_tier, in_flight=limits.in_flight)
    orch = _Orchestration(scope, goal, ws, opts, on_event)
    return await orch.go(tools, stored, scope.finished)


class _Orchestration:
    def __init__(
        self, scope: Scope, goal: str, ws: Workspace | None, opts: Options, on_event: EventFn | None
    ) -> None:
        self.scope, self.goal, self.ws, self.opts = scope, goal, ws, opts
        self.on_event = on_event
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def _emit(self, event: str, step: str, **info: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, step, info)

    async def call(self, task: Task) -> Result:
        return await self.scope.call(task)

    async def _route(self, plan: Plan) -> dict[str, Decision]:
        """The router's decision for every step, once, before anything runs (merging needs the tiers)."""
        decisions = await asyncio.gather(*(self.scope.route(step_task(s, self.goal)) for s in plan.steps))
        return {s.id: d for s, d in zip(plan.steps, decisions, strict=True)}

    async def _plan(self) -> tuple[Plan, dict[str, Decision], bool]:
        listing = _listing(self.ws) if self.ws is not None else None
        self._emit("planning", PLAN_STEP)
        made = await make_plan(self.call, self.goal, listing=listing, limits=self.opts.plan_limits)
        self.notes.extend(made.notes)
        plan = made.plan
        decisions = await self._route(plan)
        planner_tokens = sum(r.usage.total_tokens for r in made.results)
        est = estimate_overhead(plan, self.goal, planner_tokens)
        if est.ratio > self.opts.overhead_threshold and len(plan.steps) > 1:
            merged, merges = merge_siblings(plan, {k: d.tier for k, d in decisions.items()})
            if merges and not validate_plan(merged, self.opts.plan_limits):
                self.warnings.append(
                    f"over-decomposition: estimated orchestration/execution tokens {est.ratio:.2f} > "
                    f"{self.opts.overhead_threshold:.2f}; " + "; ".join(merges)
                )
                plan = merged
                decisions = await self._route(plan)  # merged steps have new instructions
        for s in plan.steps:
            d = decisions[s.id]
            if s.tier is not None and s.tier is not d.tier:
                self.notes.append(f"step {s.id}: hint {s.tier.value}, routed to {d.tier.value}: {d.reason}")
        meta = {
            "goal": self.goal,
            "workspace": str(self.ws.root) if self.ws is not None else None,
            "fallback": made.fallback,
            "tiers": {k: d.tier.value for k, d in decisions.items()},
            "reasons": {k: d.reason for k, d in decisions.items()},
            "notes": self.notes,
            "warnings": self.warnings,
        }
        await self.scope.record_step_durable(
            PLAN_STEP, "ok", output=plan.model_dump_json(), results=made.results, metadata=meta
        )
        self._emit("planned", PLAN_STEP, steps=[s.id for s in plan.steps], fallback=made.fallback)
        return plan, decisions, made.fallback

    async def go(
        self, tools: tuple[Any, ...], stored: StepRecord | None, finished: Mapping[str, StepRecord]
    ) -> OrchestrationResult:
        if stored is not None:
            plan = Plan.model_validate_json(stored.output or "")
            meta = stored.metadata
            fallback = bool(meta.get("fallback"))
            self.notes.extend(meta.get("notes", []))
            self.warnings.extend(meta.get("warnings", []))
            self.notes.append(f"resumed: {len(finished) - 1} finished step record(s) reused")
            decisions = await self._route(plan)
        else:
            plan, decisions, fallback = await self._plan()
        done = {
            k: StepOutcome.from_record(v) for k, v in finished.items() if k not in (PLAN_STEP, FINAL_STEP)
        }
        ex = Executor(
            self.scope, plan, decisions=decisions, goal=self.goal, workspace=self.ws,
            tools=tools, limits=self.opts.exec_limits, on_event=self.on_event,
        )  # fmt: skip
        outcomes = await ex.execute(done)
        final = finished.get(FINAL_STEP)
        if final is not None:
            answer = final.output or ""
        else:
            answer = await self._synthesize(ex, plan, outcomes)
        return await self._result(plan, ex.outcomes, decisions, fallback, answer, stored is not None)

    async def _unsynthesized(self, outcomes: dict[str, StepOutcome], exc: InvalidOutput) -> str:
        self.warnings.append(f"final QA and synthesis failed, the answer lists the step results: {exc}")
        parts = [f"- {sid}: {(o.output or '').strip()[:500]}" for sid, o in outcomes.items()]
        answer = "No synthesis could be written; the steps returned:\n" + "\n".join(parts)
        await self.scope.record_step_durable(FINAL_STEP, "failed", output=answer, error=str(exc)[:500])
        self._emit("done", FINAL_STEP)
        return answer

    async def _synthesize(self, ex: Executor, plan: Plan, outcomes: dict[str, StepOutcome]) -> str:
        reruns = 0
        paid: list[Result] = []
        while True:
            self._emit("synthesis", FINAL_STEP)
            try:
                verdict, result = await synthesize(self.call, self.goal, plan, outcomes)
            except BudgetExceeded as exc:
                raise BudgetExceeded(
                    f"step {FINAL_STEP!r} (final QA and synthesis) stopped: {exc}; finished steps are kept; "
                    f"continue with `tierwise resume {self.scope.id}` and a larger --budget"
                ) from exc
            except InvalidOutput as exc:
                # No model in reach wrote a valid synthesis (the embedded 135M model often cannot): the
                # answer falls back to the step results themselves, and the run says so.
                return await self._unsynthesized(outcomes, exc)
            paid.append(result)
            if not verdict.rerun or reruns >= self.opts.max_reruns:
                break
            reruns += 1
            self.notes.append(
                f"final QA asked to re-run {', '.join(verdict.rerun)}: {verdict.feedback[:200]}"
            )
            fix = f"\n\nA reviewer asked for a re-run of this step: {verdict.feedback}"
            again = set(verdict.rerun)
            ex.plan = Plan(
                steps=[
                    s.model_copy(update={"instruction": s.instruction + fix}) if s.id in again else s
                    for s in plan.steps
                ]
            )
            for rid in again:
                ex.outcomes.pop(rid, None)
            outcomes = await ex.execute()
        if verdict.rerun:
            self.warnings.append(f"final QA still wanted re-runs of {', '.join(verdict.rerun)} (cap reached)")
        rec = await self.scope.record_step_durable(
            FINAL_STEP, "ok", output=verdict.answer, results=paid,
            metadata={"complete": verdict.complete, "reruns": reruns},
        )  # fmt: skip
        self._emit("done", FINAL_STEP, tier=rec.tier, cost=rec.cost_usd)
        return verdict.answer

    async def _result(
        self,
        plan: Plan,
        outcomes: Mapping[str, StepOutcome],
        decisions: Mapping[str, Decision],
        fallback: bool,
        answer: str,
        resumed: bool,
    ) -> OrchestrationResult:
        calls = await self.scope.calls()
        spend = await self.scope.spend()
        measured = measured_overhead(calls, self.goal)
        if measured.ratio > self.opts.overhead_threshold:
            self.warnings.append(
                f"over-decomposition: orchestration used {measured.orchestration_tokens} tokens against "
                f"{measured.execution_tokens} for the steps' work (ratio {measured.ratio:.2f}); "
                "fewer, larger steps would cost less"
            )
        per_step = spend["cost_per_step"]
        assert isinstance(per_step, dict)
        steps = []
        for s in plan.steps:
            o = outcomes.get(s.id)
            steps.append(
                {
                    "id": s.id,
                    "kind": s.kind.value,
                    "tier": o.tier if o is not None and o.tier else decisions[s.id].tier.value,
                    "tier_reason": decisions[s.id].reason if s.id in decisions else "",
                    "model": o.model if o is not None else None,
                    "status": o.status if o is not None else "not run",
                    "cost_usd": per_step.get(s.id, o.cost_usd if o is not None else None),
                }
            )
        overhead = {
            "orchestration_tokens": measured.orchestration_tokens,
            "execution_tokens": measured.execution_tokens,
            "ratio": round(measured.ratio, 3),
            "threshold": self.opts.overhead_threshold,
        }
        return OrchestrationResult(
            run_id=self.scope.id, goal=self.goal, answer=answer, steps=steps, spend=spend,
            fallback_plan=fallback, warnings=self.warnings, notes=self.notes, overhead=overhead,
            resumed=resumed,
        )  # fmt: skip
