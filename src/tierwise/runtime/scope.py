"""``Scope``: a run in progress, what orchestration, systems and evaluation hold instead of the Session.

A scope carries the run's id and budget and offers the one path (``call``, ``stream``, ``embed``,
``route``), step records, the spend so far, the steps an earlier attempt finished (for resume) and the
fan-out limits. Lower layers get everything they need from it, so nothing below ``session`` imports the
``Session`` and the session never has to be called back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from tierwise.core import Decision, Layer, Stakes, Task, TaskKind, Tier
from tierwise.errors import InputError
from tierwise.ledger.records import CallRecord, StepRecord
from tierwise.ledger.spend import spend_summary
from tierwise.runtime.breaker import RetryBudget
from tierwise.runtime.budget import Budget
from tierwise.runtime.progress import Progress

if TYPE_CHECKING:
    from tierwise.models.spec import ModelSpec
    from tierwise.providers.base import Embeddings
    from tierwise.runtime.result import Result
    from tierwise.runtime.runtime import Runtime

__all__ = ["CallRecord", "FanOut", "Scope", "StepRecord", "StepSink"]


class StepSink(Protocol):
    """Where step records go and calls are read back (the Ledger)."""

    def record_step(self, rec: StepRecord, *, durable: bool = False) -> None: ...

    async def aflush(self) -> None: ...

    def calls(self, run_id: str) -> list[CallRecord]: ...


@dataclass(frozen=True, slots=True)
class FanOut:
    """Concurrent model calls of one run: per tier (by each call's routed tier) and in total."""

    per_tier: Mapping[Tier, int] = field(default_factory=lambda: {Tier.LARGE: 4, Tier.MINI: 8, Tier.NANO: 50})
    in_flight: int = 64

    def __post_init__(self) -> None:
        if self.in_flight < 1 or any(n < 1 for n in self.per_tier.values()):
            raise InputError("fan-out limits must be at least 1: raise in_flight / per_tier")

    @classmethod
    def uniform(cls, n: int) -> FanOut:
        """At most ``n`` calls at once, whatever their tiers (a batch's ``--concurrency``)."""
        return cls(per_tier=dict.fromkeys(Tier, n), in_flight=n)


@dataclass(eq=False)
class Scope:
    """A run in progress: its id, kind and budget (under the process budget), and the one path."""

    id: str
    kind: str
    budget: Budget
    label: str = ""
    # Layer-swap experiment: every task of a layer is routed with this tier pinned.
    layer_tiers: dict[Layer, Tier] = field(default_factory=dict)
    # Steps an earlier attempt of this run finished (their latest durable record is ok): resume skips them.
    finished: dict[str, StepRecord] = field(default_factory=dict)
    fan_out: FanOut = field(default_factory=FanOut)
    runtime: Runtime | None = None
    steps: StepSink | None = None
    # The run's retry budget (created by the runtime's fallback layer on first use).
    retries: RetryBudget | None = None
    # Stages, items and spend so far, for a live view; every recorded call adds itself.
    progress: Progress = field(default_factory=Progress)
    # Why the run could not cover all of its input (budget, window): it ends "partial", not "ok".
    shortfalls: list[str] = field(default_factory=list)
    _sems: dict[Tier, asyncio.Semaphore] = field(default_factory=dict, repr=False)
    _global: asyncio.Semaphore | None = field(default=None, repr=False)

    # --- the one path -------------------------------------------------------------------------------

    def _rt(self) -> Runtime:
        if self.runtime is None:
            raise InputError(
                "this scope has no runtime: open one with `async with session.run(...) as scope`"
            )
        return self.runtime

    def task(
        self,
        text: str | Task,
        *,
        kind: TaskKind | str | None = None,
        stakes: Stakes | str = Stakes.NORMAL,
        ambiguity: float | None = None,
        hint: Tier | str | None = None,
        schema: type[BaseModel] | dict[str, Any] | None = None,
        step_id: str | None = None,
        **fields: Any,
    ) -> Task:
        """A Task described by kind, stakes, ambiguity and at most a tier hint (the router decides)."""
        if isinstance(text, Task):
            return text
        output_schema = schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None
        return Task(
            input=text,
            kind=TaskKind(kind) if kind is not None else None,
            stakes=Stakes(stakes),
            ambiguity=ambiguity,
            tier_hint=Tier(hint) if hint is not None else None,
            output_schema=output_schema,
            json_schema=schema if isinstance(schema, dict) else None,
            step_id=step_id,
            **fields,
        )

    async def route(self, task: Task | str, **describe: Any) -> Decision:
        """The decision the router makes for ``task`` (inferring a missing kind, a metered nano call)."""
        return (await self._rt().decide(self.task(task, **describe), self))[1]

    async def call(self, task: Task | str, *, decision: Decision | None = None, **describe: Any) -> Result:
        """Route ``task`` (unless ``decision`` is given), then run it through the one path under the
        fan-out limit of its routed tier."""
        rt = self._rt()
        t = self.task(task, **describe)
        if decision is None:
            t, decision = await rt.decide(t, self)
        async with self._limit(decision.tier):
            return await rt.call(t, self, decision=decision)

    def stream(self, task: Task | str, **describe: Any) -> AsyncIterator[str]:
        """Text deltas of one routed, budgeted, recorded call (see ``Runtime.stream``)."""
        return self._rt().stream(self.task(task, **describe), self)

    async def embed(
        self,
        texts: list[str],
        *,
        model: str | None = None,
        kind: TaskKind = TaskKind.PREPROCESS,
        reason: str = "embeddings",
    ) -> Embeddings:
        return await self._rt().embed(texts, self, model=model, kind=kind, reason=reason)

    def model(self, model_id: str) -> ModelSpec:
        """The catalog entry of a model a decision names (its window, prices, what it is)."""
        return self._rt().catalog.get(model_id)

    def _limit(self, tier: Tier) -> _Both:
        if self._global is None:
            self._global = asyncio.Semaphore(self.fan_out.in_flight)
        sem = self._sems.get(tier)
        if sem is None:
            sem = self._sems[tier] = asyncio.Semaphore(self.fan_out.per_tier.get(tier, 8))
        return _Both(sem, self._global)  # the tier's slot first: waiting for it holds no global slot

    # --- steps and spend ----------------------------------------------------------------------------

    def partial(self, why: str) -> None:
        """Say the run could not cover all of its input (what was left and why): it ends ``partial``."""
        if why not in self.shortfalls:
            self.shortfalls.append(why)

    def step_record(
        self,
        step_id: str,
        status: str,
        *,
        output: str | None = None,
        results: Sequence[Result] = (),
        error: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> StepRecord:
        """A step's record: its tier, model and cost come from its calls' decisions, never from literals."""
        meta: dict[str, Any] = dict(metadata or {})
        tier = None
        cost: float | None = None
        if results:
            last = results[-1]
            tier = last.decision.tier.value
            meta.setdefault("model", last.model)
            meta.setdefault("tiers", sorted({r.decision.tier.value for r in results}))
            meta.setdefault("calls", len(results))
            meta.setdefault("input_tokens", sum(r.usage.input_tokens for r in results))
            meta.setdefault("output_tokens", sum(r.usage.output_tokens for r in results))
            costs = [r.cost_usd for r in results]
            cost = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
        tier = meta.pop("tier", tier)
        cost = meta.pop("cost_usd", cost)
        return StepRecord(
            self.id, step_id, status, tier=tier, output=output, cost_usd=cost, error=error, metadata=meta
        )

    def record_step(self, step_id: str, status: str, **fields: Any) -> StepRecord:
        """Record a step (queued; see ``record_step_durable`` for one resume can rely on)."""
        rec = self.step_record(step_id, status, **fields)
        self._sink().record_step(rec)
        return rec

    async def record_step_durable(self, step_id: str, status: str, **fields: Any) -> StepRecord:
        """Record a step and wait until it is committed: a finished step survives a crash."""
        rec = self.step_record(step_id, status, **fields)
        await self.commit_step(rec)
        return rec

    async def commit_step(self, rec: StepRecord) -> None:
        sink = self._sink()
        sink.record_step(rec)
        await sink.aflush()

    async def calls(self) -> list[CallRecord]:
        """This run's call records, once every queued record has landed."""
        sink = self._sink()
        await sink.aflush()
        return await asyncio.to_thread(sink.calls, self.id)

    async def spend(self) -> dict[str, Any]:
        """Total, per tier, per step and the all-large counterfactual of this run, from the ledger."""
        rt = self._rt()
        return dict(spend_summary(await self.calls(), rt.large_model()))

    def _sink(self) -> StepSink:
        if self.steps is None:
            raise InputError(
                "this scope records no steps: open it with `async with session.run(...) as scope`"
            )
        return self.steps


class _Both:
    """Hold two semaphores (the tier's, then the run's in-flight cap) as one context manager."""

    __slots__ = ("_a", "_b")

    def __init__(self, a: asyncio.Semaphore, b: asyncio.Semaphore) -> None:
        self._a, self._b = a, b

    async def __aenter__(self) -> None:
        await self._a.acquire()
        try:
            await self._b.acquire()
        except BaseException:
            self._a.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._b.release()
        self._a.release()
