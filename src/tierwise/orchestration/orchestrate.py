"""``orchestrate``: plan on large, execute the DAG on mini/nano subagents, QA and synthesize on large.

The plan is stored as the run's ``__plan__`` step and every finished step is durable before its
dependents start, so ``orchestrate(..., resume_run_id=ID)`` reloads both and pays only for what is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierwise.errors import BudgetExceeded, InputError, InvalidOutput
from tierwise.ledger.records import RunRecord, StepRecord
from tierwise.orchestration.executor import EventFn, ExecLimits, Executor, StepOutcome
from tierwise.orchestration.plan import FINAL_STEP, PLAN_STEP, Plan, PlanLimits, validate_plan
from tierwise.orchestration.planner import assign_tiers, make_plan
from tierwise.orchestration.spend import estimate_overhead, measured_overhead, merge_siblings, spend_summary
from tierwise.orchestration.synthesis import synthesize
from tierwise.providers.tokens import count_text
from tierwise.routing.task import Task
from tierwise.runtime.result import Result, Run
from tierwise.tiers import Tier
from tierwise.tools import Workspace, workspace_tools

if TYPE_CHECKING:
    from tierwise.session import Session

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


def _check_goal(session: Session, goal: str) -> None:
    if not isinstance(goal, str) or not goal.strip():
        raise InputError('the goal is empty: say what to do, e.g. "Summarize the TODOs in this repo"')
    rt = session._rt()
    large = rt.catalog.get(rt.tiers[Tier.LARGE])
    room = large.context_window - min(large.max_output_tokens, large.context_window // 2)
    n = count_text(goal) if len(goal) > room else 0  # a token is at least a character: skip short goals
    if n > room:
        raise InputError(
            f"the goal is ~{n} tokens but the large model {large.id} takes {room} input tokens: shorten "
            "the goal, or put the material in a workspace and pass --workspace"
        )


async def orchestrate(
    session: Session,
    goal: str = "",
    *,
    workspace: str | Path | None = None,
    budget: float | None = None,
    resume_run_id: str | None = None,
    options: Options | None = None,
    on_event: EventFn | None = None,
) -> OrchestrationResult:
    """Plan, execute and synthesize ``goal`` (or continue run ``resume_run_id``) through the runtime."""
    opts = options or Options()
    session._rt()  # fails clearly when the session is not open
    ledger = session.ledger
    assert ledger is not None
    if budget is not None and budget <= 0:
        raise InputError(f"budget must be greater than 0, got {budget}: pass a positive amount in USD")
    stored: StepRecord | None = None
    finished: dict[str, StepRecord] = {}
    if resume_run_id is not None:
        rec = await asyncio.to_thread(ledger.get_run, resume_run_id)
        finished = await asyncio.to_thread(ledger.finished_steps, rec.id)
        stored = finished.get(PLAN_STEP)
        if stored is None or not stored.output:
            raise InputError(f"run {rec.id} has no stored plan: only orchestrations can be resumed")
        goal = str(stored.metadata.get("goal", rec.label))
        workspace = workspace or stored.metadata.get("workspace")
        ledger.start_run(
            RunRecord(id=rec.id, kind=rec.kind, label=rec.label, budget_usd=budget or rec.budget_usd)
        )
        run_cm = session.run(RUN_KIND, rec.label, budget_usd=budget, run_id=rec.id)
    else:
        _check_goal(session, goal)
        run_cm = session.run(RUN_KIND, goal[:200], budget_usd=budget)
    ws = Workspace(Path(workspace)) if workspace is not None else None
    tools = workspace_tools(ws) if ws is not None else ()

    async with run_cm as run:
        orch = _Orchestration(session, run, goal, ws, opts, on_event)
        return await orch.go(tools, stored, finished)


class _Orchestration:
    def __init__(
        self,
        session: Session,
        run: Run,
        goal: str,
        ws: Workspace | None,
        opts: Options,
        on_event: EventFn | None,
    ) -> None:
        self.session, self.run, self.goal, self.ws, self.opts = session, run, goal, ws, opts
        self.on_event = on_event
        self.rt = session._rt()
        self.ledger = session.ledger
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def _emit(self, event: str, step: str, **info: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, step, info)

    async def call(self, task: Task) -> Result:
        return await self.rt.call(task, self.run)

    async def _plan(self) -> tuple[Plan, dict[str, Tier], bool, dict[str, str]]:
        listing = _listing(self.ws) if self.ws is not None else None
        self._emit("planning", PLAN_STEP)
        made = await make_plan(self.call, self.goal, listing=listing, limits=self.opts.plan_limits)
        self.notes.extend(made.notes)
        plan = made.plan
        threshold = getattr(self.rt.router, "ambiguity_threshold", 0.6)
        choices = assign_tiers(plan, ambiguity_threshold=threshold)
        planner_tokens = sum(r.usage.total_tokens for r in made.results)
        est = estimate_overhead(plan, self.goal, planner_tokens)
        if est.ratio > self.opts.overhead_threshold and len(plan.steps) > 1:
            merged, merges = merge_siblings(plan, {k: c.tier for k, c in choices.items()})
            if merges and not validate_plan(merged, self.opts.plan_limits):
                self.warnings.append(
                    f"over-decomposition: estimated orchestration/execution tokens {est.ratio:.2f} > "
                    f"{self.opts.overhead_threshold:.2f}; " + "; ".join(merges)
                )
                plan = merged
                choices = {k: v for k, v in choices.items() if k in plan.by_id()}
        for sid, c in choices.items():
            if c.overridden:
                self.notes.append(f"step {sid}: {c.reason}")
        tiers = {k: c.tier for k, c in choices.items()}
        reasons = {k: c.reason for k, c in choices.items()}
        cost = sum(r.cost_usd or 0.0 for r in made.results)
        meta = {
            "goal": self.goal,
            "workspace": str(self.ws.root) if self.ws is not None else None,
            "fallback": made.fallback,
            "tiers": {k: t.value for k, t in tiers.items()},
            "reasons": reasons,
            "notes": self.notes,
            "warnings": self.warnings,
        }
        rec = StepRecord(
            self.run.id, PLAN_STEP, "ok", tier=Tier.LARGE.value, output=plan.model_dump_json(),
            cost_usd=cost, metadata=meta,
        )  # fmt: skip
        assert self.ledger is not None
        await self.ledger.record_step_durable(rec)
        self._emit("planned", PLAN_STEP, steps=[s.id for s in plan.steps], fallback=made.fallback)
        return plan, tiers, made.fallback, reasons

    async def go(
        self, tools: tuple[Any, ...], stored: StepRecord | None, finished: Mapping[str, StepRecord]
    ) -> OrchestrationResult:
        if stored is not None:
            plan = Plan.model_validate_json(stored.output or "")
            meta = stored.metadata
            tiers = {k: Tier(v) for k, v in meta.get("tiers", {}).items()}
            fallback, reasons = bool(meta.get("fallback")), dict(meta.get("reasons", {}))
            self.notes.extend(meta.get("notes", []))
            self.warnings.extend(meta.get("warnings", []))
            self.notes.append(f"resumed: {len(finished) - 1} finished step record(s) reused")
        else:
            plan, tiers, fallback, reasons = await self._plan()
        done = {
            k: StepOutcome.from_record(v) for k, v in finished.items() if k not in (PLAN_STEP, FINAL_STEP)
        }
        ex = Executor(
            self.rt, self.run, self.ledger, plan, tiers=tiers, goal=self.goal, workspace=self.ws,
            tools=tools, limits=self.opts.exec_limits, on_event=self.on_event,
        )  # fmt: skip
        outcomes = await ex.execute(done)
        final = finished.get(FINAL_STEP)
        if final is not None:
            answer = final.output or ""
        else:
            answer = await self._synthesize(ex, plan, outcomes)
        return await self._result(plan, ex.outcomes, tiers, reasons, fallback, answer, stored is not None)

    async def _unsynthesized(self, outcomes: dict[str, StepOutcome], exc: InvalidOutput) -> str:
        self.warnings.append(f"final QA and synthesis failed, the answer lists the step results: {exc}")
        parts = [f"- {sid}: {(o.output or '').strip()[:500]}" for sid, o in outcomes.items()]
        answer = "No synthesis could be written; the steps returned:\n" + "\n".join(parts)
        assert self.ledger is not None
        rec = StepRecord(self.run.id, FINAL_STEP, "failed", output=answer, error=str(exc)[:500])
        await self.ledger.record_step_durable(rec)
        self._emit("done", FINAL_STEP)
        return answer

    async def _synthesize(self, ex: Executor, plan: Plan, outcomes: dict[str, StepOutcome]) -> str:
        reruns = 0
        cost = 0.0
        while True:
            self._emit("synthesis", FINAL_STEP)
            try:
                verdict, result = await synthesize(self.call, self.goal, plan, outcomes)
            except BudgetExceeded as exc:
                raise BudgetExceeded(
                    f"step {FINAL_STEP!r} (final QA and synthesis) stopped: {exc}; finished steps are kept; "
                    f"continue with `tierwise resume {self.run.id}` and a larger --budget"
                ) from exc
            except InvalidOutput as exc:
                # No model in reach wrote a valid synthesis (the embedded 135M model often cannot): the
                # answer falls back to the step results themselves, and the run says so.
                return await self._unsynthesized(outcomes, exc)
            cost += result.cost_usd or 0.0
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
        assert self.ledger is not None
        rec = StepRecord(
            self.run.id, FINAL_STEP, "ok", tier=result.decision.tier.value, output=verdict.answer,
            cost_usd=cost, metadata={"complete": verdict.complete, "reruns": reruns, "model": result.model},
        )  # fmt: skip
        await self.ledger.record_step_durable(rec)
        self._emit("done", FINAL_STEP, tier=result.decision.tier.value, cost=cost)
        return verdict.answer

    async def _result(
        self,
        plan: Plan,
        outcomes: Mapping[str, StepOutcome],
        tiers: Mapping[str, Tier],
        reasons: Mapping[str, str],
        fallback: bool,
        answer: str,
        resumed: bool,
    ) -> OrchestrationResult:
        assert self.ledger is not None
        calls = await asyncio.to_thread(self.ledger.calls, self.run.id)
        large = self.rt.catalog.get(self.rt.tiers[Tier.LARGE]) if Tier.LARGE in self.rt.tiers else None
        spend = spend_summary(calls, large)
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
                    "tier": o.tier if o is not None and o.tier else tiers[s.id].value,
                    "tier_reason": reasons.get(s.id, ""),
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
            run_id=self.run.id, goal=self.goal, answer=answer, steps=steps, spend=spend,
            fallback_plan=fallback, warnings=self.warnings, notes=self.notes, overhead=overhead,
            resumed=resumed,
        )  # fmt: skip
