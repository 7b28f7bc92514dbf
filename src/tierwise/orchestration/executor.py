"""The DAG executor: runs a plan's steps with asyncio as soon as their dependencies are durable.

Every call of a step is routed (the step gives its kind, ambiguity and tier hint); concurrency is bounded
per routed tier and globally by the scope's fan-out limits (on model calls, not on steps, so a step
waiting for its durable record holds no slot). A failure or an exhausted budget cancels everything still
running.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from tierwise.core import Decision, Task, TaskKind, Tier
from tierwise.errors import BudgetExceeded, StepFailed, ToolError
from tierwise.orchestration.fit import room_of
from tierwise.orchestration.plan import Plan, Step
from tierwise.orchestration.subagent import run_subagent
from tierwise.runtime.result import Result
from tierwise.runtime.scope import Scope, StepRecord, StepSink
from tierwise.tools.workspace import Tool, Workspace

# Kinds that run as a tool-calling subagent when a workspace is given.
TOOL_KINDS = frozenset(
    {
        TaskKind.CODE_SEARCH,
        TaskKind.REVIEW_FILE,
        TaskKind.READ_DOCS,
        TaskKind.DEBUG,
        TaskKind.CODE_EDIT,
        TaskKind.TOOL_OP,
    }
)
MAX_INPUT_CHARS = 4000  # per dependency output or file pasted into a step prompt

EventFn = Callable[[str, str, Mapping[str, Any]], None]


class MapBatch(BaseModel):
    results: list[str]


@dataclass(frozen=True, slots=True)
class ExecLimits:
    """Per-tier and global in-flight caps on model calls; items per nano map call; subagent turns."""

    per_tier: Mapping[Tier, int] = field(default_factory=lambda: {Tier.LARGE: 4, Tier.MINI: 8, Tier.NANO: 50})
    in_flight: int = 64
    map_batch: int = 10
    max_turns: int = 6


@dataclass(slots=True)
class StepOutcome:
    step_id: str
    kind: str
    tier: str
    model: str | None
    status: str  # ok | failed | resumed
    output: str = ""
    cost_usd: float | None = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    error: str | None = None

    results: list[Result] = field(default_factory=list)

    def record(self, scope: Scope) -> StepRecord:
        """The step's record; tier, model, tokens and cost come from its calls' decisions and usage."""
        status = "ok" if self.status in ("ok", "resumed") else self.status
        meta: dict[str, Any] = {"kind": self.kind}
        if not self.results:  # a step that made no call (resumed or failed before): what is known
            known = {"tier": self.tier or None, "model": self.model, "cost_usd": self.cost_usd}
            tokens = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
            meta.update(known, **tokens, calls=self.calls)
        return scope.step_record(
            self.step_id, status, output=self.output, results=self.results, error=self.error, metadata=meta
        )

    @classmethod
    def from_record(cls, rec: StepRecord) -> StepOutcome:
        m = rec.metadata or {}
        return cls(
            step_id=rec.step_id,
            kind=str(m.get("kind", "")),
            tier=rec.tier or "",
            model=m.get("model"),
            status="resumed",
            output=rec.output or "",
            cost_usd=rec.cost_usd,
            input_tokens=int(m.get("input_tokens", 0)),
            output_tokens=int(m.get("output_tokens", 0)),
            calls=int(m.get("calls", 0)),
        )

    def add(self, result: Result) -> None:
        self.results.append(result)
        self.calls += 1
        self.model = result.model
        self.tier = result.decision.tier.value
        self.input_tokens += result.usage.input_tokens
        self.output_tokens += result.usage.output_tokens
        if self.cost_usd is not None:
            self.cost_usd = None if result.cost_usd is None else self.cost_usd + result.cost_usd


class GroupCommit:
    """Durable step records with group commit: every step finishing meanwhile shares one flush.

    A step counts as finished only once its record is committed; batching the flushes keeps that
    guarantee while costing one transaction per burst instead of one per step.
    """

    def __init__(self, ledger: StepSink) -> None:
        self.ledger = ledger
        self._next: asyncio.Future[None] | None = None
        self._flushing = False

    async def durable(self, rec: StepRecord) -> None:
        self.ledger.record_step(rec)
        fut = self._next
        if fut is None:
            fut = self._next = asyncio.get_running_loop().create_future()
            if not self._flushing:
                self._flushing = True
                asyncio.get_running_loop().create_task(self._flush())
        await asyncio.shield(fut)

    async def _flush(self) -> None:
        try:
            while self._next is not None:
                fut, self._next = self._next, None  # records enqueued from now on wait for the next flush
                try:
                    await self.ledger.aflush()
                except BaseException as exc:
                    fut.set_exception(exc)
                    fut.exception()  # mark retrieved: a waiter may have been cancelled meanwhile
                else:
                    fut.set_result(None)
        finally:
            self._flushing = False


def step_task(step: Step, goal: str, prompt: str | None = None) -> Task:
    """How a step describes its work to the router: kind, ambiguity and its tier hint, never a tier."""
    text = prompt or f"Overall goal: {goal}\n\nYour step ({step.id}, {step.kind.value}): {step.instruction}"
    return Task(input=text, kind=step.kind, tier_hint=step.tier, ambiguity=step.ambiguity, step_id=step.id)


class Executor:
    """Runs ``plan`` (or what is left of it) in ``scope``."""

    def __init__(
        self,
        scope: Scope,
        plan: Plan,
        *,
        decisions: Mapping[str, Decision] | None = None,
        goal: str = "",
        workspace: Workspace | None = None,
        tools: tuple[Tool, ...] = (),
        limits: ExecLimits | None = None,
        on_event: EventFn | None = None,
    ) -> None:
        self.scope, self.plan, self.goal = scope, plan, goal
        self.decisions = dict(decisions or {})
        self.workspace, self.tools = workspace, tools
        self.limits = limits or ExecLimits()
        self.on_event = on_event
        assert scope.steps is not None, "the executor needs a scope that records steps"
        self.commit = GroupCommit(scope.steps)
        self.outcomes: dict[str, StepOutcome] = {}

    def _emit(self, event: str, step_id: str, **info: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, step_id, info)

    def _tier(self, step: Step) -> str:
        d = self.decisions.get(step.id)
        return d.tier.value if d is not None else (step.tier.value if step.tier else "")

    async def execute(self, finished: Mapping[str, StepOutcome] | None = None) -> dict[str, StepOutcome]:
        """Run every step not in ``finished``; returns all outcomes or raises the first failure."""
        self.outcomes.update(finished or {})
        steps = [s for s in self.plan.steps if s.id not in self.outcomes]
        if not steps:
            return self.outcomes
        waiting = {s.id: sum(1 for d in s.depends_on if d not in self.outcomes) for s in steps}
        dependents: dict[str, list[Step]] = {}
        for s in steps:
            for d in s.depends_on:
                dependents.setdefault(d, []).append(s)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        tasks: set[asyncio.Task[None]] = set()
        left = len(steps)

        def spawn(step: Step) -> None:
            t = loop.create_task(one(step))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

        async def one(step: Step) -> None:
            nonlocal left
            self._emit("start", step.id, tier=self._tier(step))
            try:
                outcome = await self._run_step(step)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed = StepOutcome(step.id, step.kind.value, self._tier(step), None, "failed")
                failed.error = f"{type(exc).__name__}: {exc}"[:500]
                self._emit("failed", step.id, error=failed.error)
                if not done.done():
                    done.set_exception(_wrap(step, exc, self.scope.id))
                await self.commit.durable(failed.record(self.scope))
                return
            await self.commit.durable(outcome.record(self.scope))
            self.outcomes[step.id] = outcome
            self._emit("done", step.id, tier=outcome.tier, cost=outcome.cost_usd)
            left -= 1
            for nxt in dependents.get(step.id, ()):
                waiting[nxt.id] -= 1
                if waiting[nxt.id] == 0:
                    spawn(nxt)
            if left == 0 and not done.done():
                done.set_result(None)

        for s in steps:
            if waiting[s.id] == 0:
                spawn(s)
        try:
            await done
        finally:
            for t in list(tasks):
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        return self.outcomes

    # --- one step -----------------------------------------------------------------------------------

    async def _run_step(self, step: Step) -> StepOutcome:
        outcome = StepOutcome(step.id, step.kind.value, self._tier(step), None, "ok")
        task = step_task(step, self.goal, self.prompt(step))
        # The router decides this step's call (and with it the tier, the concurrency slot, the subagent).
        decision = await self.scope.route(task)
        if step.items:
            outcome.output = await self._map(step, task, outcome)
        elif self.tools and decision.tier is not Tier.NANO and step.kind in TOOL_KINDS:
            sub = await run_subagent(
                self.scope.call, task, self.tools, max_turns=self.limits.max_turns, room=room_of(self.scope)
            )
            for r in sub.results:
                outcome.add(r)
            outcome.output = sub.text
        else:
            result = await self.scope.call(task, decision=decision)
            outcome.add(result)
            outcome.output = result.text
        return outcome

    async def _map(self, step: Step, task: Task, outcome: StepOutcome) -> str:
        """Apply the instruction to each item, ``map_batch`` items per call, batches in parallel."""
        items = step.items or []
        size = self.limits.map_batch
        batches = [items[i : i + size] for i in range(0, len(items), size)]

        async def one(batch: list[str]) -> list[str]:
            body = json.dumps(batch, ensure_ascii=False)
            text = (
                f"{task.input}\n\nApply the step to each of these {len(batch)} items and return "
                f'{{"results": [...]}} with exactly one result string per item, in order.\nItems: {body}'
            )
            result = await self.scope.call(replace(task, input=text, output_schema=MapBatch))
            outcome.add(result)
            got = result.output.results if isinstance(result.output, MapBatch) else []
            # A short answer is padded rather than failing the whole step; the gap stays visible.
            return [*got[: len(batch)], *["(no result)"] * max(0, len(batch) - len(got))]

        parts = await asyncio.gather(*(one(b) for b in batches))
        return json.dumps([r for part in parts for r in part], ensure_ascii=False)

    def prompt(self, step: Step) -> str:
        """The step's prompt: the goal, the instruction, dependency outputs and files it reads."""
        parts = [
            f"Overall goal: {self.goal}",
            f"Your step ({step.id}, {step.kind.value}): {step.instruction}",
        ]
        for dep in step.depends_on:
            out = self.outcomes[dep].output if dep in self.outcomes else ""
            parts.append(f"Output of step {dep}:\n{_clip(out)}")
        for path in step.files:
            if self.workspace is None:
                parts.append(f"File {path}: (no workspace given)")
                continue
            try:
                content = self.workspace.read(path)
            except ToolError as exc:
                content = f"(cannot read: {exc})"
            parts.append(f'<file path="{path}" trust="untrusted-data">\n{_clip(content)}\n</file>')
        return "\n\n".join(parts)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_INPUT_CHARS else text[:MAX_INPUT_CHARS] + " … (truncated)"


def _wrap(step: Step, exc: Exception, run_id: str) -> Exception:
    hint = f"finished steps are kept; continue with `tierwise resume {run_id}`"
    if isinstance(exc, BudgetExceeded):
        return BudgetExceeded(f"step {step.id!r} stopped: {exc}; {hint}")
    return StepFailed(f"step {step.id!r} ({step.kind.value}) failed: {exc}; {hint}", step.id)
