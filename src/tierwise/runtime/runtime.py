"""The one path every model call takes: route → budget → provider → validate → ledger."""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, Protocol

from opentelemetry.trace import StatusCode

from tierwise.errors import BudgetExceeded, InputError, InvalidOutput, ProviderError
from tierwise.ledger.records import CallRecord
from tierwise.ledger.tracing import call_attributes, tracer
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec, Usage
from tierwise.providers.base import Completion, Embeddings, Message, Request
from tierwise.providers.registry import Providers
from tierwise.providers.tokens import count_messages, count_texts
from tierwise.routing.base import Router
from tierwise.routing.kinds import KindInferrer
from tierwise.routing.task import Decision, Task
from tierwise.runtime.budget import Reservation
from tierwise.runtime.limits import RateLimits
from tierwise.runtime.result import Result, Run
from tierwise.runtime.shadow import JudgeVerdict, ShadowSampler, agreement, judge_messages
from tierwise.runtime.validation import OutputInvalid, repair_messages, validate
from tierwise.tiers import Layer, TaskKind, Tier, layer_of

# Our token count is an estimate of the provider's; reserve a margin so the settled cost stays inside.
_INPUT_MARGIN = 1.15
_INPUT_SLACK = 32
EMBED_MODEL = "local/e5-small"


# Layer-swap overrides for everything called in this context (a system opens runs of its own, so the
# experiment sets them here rather than on one Run). A Run's own ``layer_tiers`` take precedence.
LAYER_TIERS: contextvars.ContextVar[dict[Layer, Tier] | None] = contextvars.ContextVar(
    "tierwise_layer_tiers", default=None
)


class CallSink(Protocol):
    """Where call records go (the Ledger); kept minimal so the runtime does not depend on storage."""

    store_prompts: bool

    def record_call(self, record: CallRecord) -> None: ...


class RetryPolicy(Protocol):
    max_attempts: int
    base_delay_s: float
    max_delay_s: float
    repair_attempts: int


class Runtime:
    def __init__(
        self,
        *,
        catalog: Catalog,
        tiers: Mapping[Tier, str],
        router: Router,
        providers: Providers,
        ledger: CallSink,
        retry: RetryPolicy,
        fallbacks: Mapping[str, list[str]] | None = None,
        inferrer: KindInferrer | None = None,
        shadow: ShadowSampler | None = None,
    ) -> None:
        self.catalog = catalog
        self.tiers = dict(tiers)
        self.router = router
        self.providers = providers
        self.ledger = ledger
        self.retry = retry
        self.fallbacks = dict(fallbacks or {})
        self.inferrer = inferrer
        self.shadow = shadow
        self.limits = RateLimits()

    # --- the one path -------------------------------------------------------------------------------

    async def call(self, task: Task, run: Run) -> Result:
        if not task.text.strip():
            raise InputError("the task's text is empty: pass the text or messages to run")
        task, decision = await self.decide(task, run)
        spec = self.catalog.get(decision.model)
        messages = task.messages()
        schema = task.schema()
        usage, cost, known, attempts = Usage(), 0.0, True, 0
        escalations: list[str] = []
        repairs = 0
        tried: set[str] = set()
        while True:
            tried.add(spec.id)
            try:
                completion, attempt_cost, n = await self._send(task, decision, spec, messages, schema, run)
            except ProviderError as exc:
                if exc.retryable:
                    nxt = self._fallback(spec, tried)
                    if nxt is not None:
                        escalations.append(f"{spec.id} kept failing ({exc}); fell back to {nxt.id}")
                        spec = nxt
                        decision = replace(
                            decision,
                            model=nxt.id,
                            tier=nxt.tier,
                            reason=decision.reason + f"; fell back to {nxt.id} after provider errors",
                        )
                        continue
                raise
            attempts += n
            usage = usage + completion.usage
            if attempt_cost is None:
                known = False
            else:
                cost += attempt_cost
            try:
                # A tool-calling turn is not the final answer: the schema applies once the model answers.
                output = (
                    None
                    if completion.tool_calls
                    else validate(completion.text, model=task.output_schema, schema=schema)
                )
            except OutputInvalid as bad:
                self._record(
                    task,
                    decision,
                    spec,
                    run,
                    completion,
                    attempt_cost,
                    "invalid_output",
                    bad.detail,
                    messages,
                )
                if repairs < self.retry.repair_attempts:
                    repairs += 1
                    messages = repair_messages(messages, completion.text, bad.detail)
                    continue
                up = self._escalate(spec)
                if up is None:
                    raise InvalidOutput(
                        f"{spec.id} returned invalid output after {repairs} repair(s) and there is no tier "
                        f"above to escalate to: {bad.detail}"
                    ) from None
                escalations.append(f"invalid output from {spec.id}: {bad.detail}")
                decision = replace(
                    decision,
                    tier=up.tier,
                    model=up.id,
                    reason=decision.reason + f"; escalated to {up.tier.value} after invalid output",
                )
                spec, repairs, messages = up, 0, task.messages()
                continue
            final_task = replace(task, metadata={**task.metadata, "escalations": len(escalations)})
            self._record(final_task, decision, spec, run, completion, attempt_cost, "ok", None, messages)
            if self.shadow is not None and decision.tier is not Tier.LARGE and self.shadow.wants():
                routed_cost = cost if known else None
                self._shadow(task, decision, spec, run, completion.text, len(escalations), routed_cost)
            return Result(
                text=completion.text,
                output=output,
                decision=decision,
                model=spec.id,
                served_model=completion.served_model,
                usage=usage,
                cost_usd=cost if known else None,
                notional=spec.notional,
                latency_s=completion.latency_s,
                attempts=attempts,
                run_id=run.id,
                tool_calls=completion.tool_calls,
                escalations=tuple(escalations),
            )

    def _shadow(
        self,
        task: Task,
        decision: Decision,
        routed: ModelSpec,
        run: Run,
        answer: str,
        escalations: int,
        routed_cost: float | None,
    ) -> None:
        """Send the task to the large tier in the background, on the shadow budget; record agreement.

        The shadow record is also an outcome row (``tierwise eval train --from-ledger``): it carries the
        routed model, what its answer cost, and, with ``[shadow] judge = true``, a judge's score of both.
        """
        assert self.shadow is not None
        sampler = self.shadow
        large_id = self.tiers.get(Tier.LARGE)
        if large_id is None:
            return
        large = self.catalog.get(large_id)
        meta = {
            **task.metadata,
            "shadow": True,
            "routed_model": routed.id,
            "routed_tier": routed.tier.value,
            "routed_cost_usd": routed_cost,
            "escalations": escalations,
        }
        shadow_task = replace(task, metadata=meta)
        shadow_run = Run(id=run.id, kind=run.kind, budget=sampler.budget, label=run.label)
        shadow_decision = replace(
            decision, tier=Tier.LARGE, model=large.id, reason="shadow check of the routed call"
        )

        async def job() -> None:
            messages = shadow_task.messages()
            completion, cost, _ = await self._send(
                shadow_task, shadow_decision, large, messages, shadow_task.schema(), shadow_run
            )
            score = agreement(answer, completion.text)
            scores = {}
            if sampler.judge:
                scores = await self._judge(shadow_task, large, shadow_run, answer, completion.text)
            scored = replace(
                shadow_task,
                metadata={**meta, "agreement": round(score, 4), "agree": score >= sampler.agree_at, **scores},
            )
            self._record(
                scored,
                shadow_decision,
                large,
                shadow_run,
                completion,
                cost,
                "ok",
                None,
                messages,
                operation="shadow",
            )

        sampler.spawn(job)

    async def _judge(
        self, task: Task, judge: ModelSpec, run: Run, routed_answer: str, large_answer: str
    ) -> dict[str, float]:
        """A large-tier judge scores both answers (order randomised against position bias), 0–1 each.

        An invalid verdict is recorded and yields no scores: the shadow row then carries agreement only.
        """
        assert self.shadow is not None
        flip = self.shadow.flip()
        judge_task = Task(
            judge_messages(task.text, routed_answer, large_answer, flip=flip),
            kind=TaskKind.FINAL_QA,
            output_schema=JudgeVerdict,
            step_id=task.step_id,
            metadata={
                "shadow": True,
                "judge": True,
                "routed_kind": task.kind.value if task.kind else "",
                "routed_tier": task.metadata.get("routed_tier", ""),
            },
        )
        decision = Decision(
            Tier.LARGE, judge.id, "shadow judge of the routed and large answers", TaskKind.FINAL_QA
        )
        messages = judge_task.messages()
        completion, cost, _ = await self._send(
            judge_task, decision, judge, messages, judge_task.schema(), run
        )
        verdict: JudgeVerdict | None = None
        status, error = "ok", None
        try:
            verdict = validate(completion.text, model=JudgeVerdict)
        except OutputInvalid as bad:
            status, error = "invalid_output", bad.detail
        self._record(
            judge_task, decision, judge, run, completion, cost, status, error, messages, operation="judge"
        )
        if verdict is None:
            return {}
        routed_score, large_score = verdict.scores(flip=flip)
        return {"routed_score": routed_score, "large_score": large_score}

    async def decide(self, task: Task, run: Run) -> tuple[Task, Decision]:
        """The routing decision, after inferring a missing kind (a metered nano embedding call)."""
        task = await self._with_kind(task, run)
        swapped = None
        layers = run.layer_tiers or LAYER_TIERS.get()
        if layers and task.kind is not None and task.model is None:
            swapped = layers.get(layer_of(task.kind))
            if swapped is not None:
                task = replace(task, tier=swapped)
        decision = self.router.route(task)
        if swapped is not None:
            decision = replace(
                decision,
                reason=f"layer swap: {layer_of(decision.kind).value} layer on "
                f"{swapped.value}; " + decision.reason,
            )
        if task.metadata.get("kind_inferred"):
            sim = float(task.metadata.get("kind_similarity", 0.0))
            why = f"kind {decision.kind.value} inferred from the text (similarity {sim:.2f}); "
            decision = replace(decision, reason=why + decision.reason)
        return task, decision

    async def _with_kind(self, task: Task, run: Run) -> Task:
        """Infer a missing kind with a metered nano embedding call (when an inferrer is available)."""
        if task.kind is not None or self.inferrer is None or task.model is not None:
            return task
        emb = await self.embed(
            [task.text], run, model=EMBED_MODEL, kind=TaskKind.PREPROCESS, reason="kind inference"
        )
        guess = self.inferrer.from_vector(emb.vectors[0], task.text)
        ambiguity = task.ambiguity if task.ambiguity is not None else guess.ambiguity
        meta = {**task.metadata, "kind_inferred": True, "kind_similarity": round(guess.score, 4)}
        return replace(task, kind=guess.kind, ambiguity=ambiguity, metadata=meta)

    def _request(
        self, task: Task, spec: ModelSpec, messages: tuple[Message, ...], schema: dict[str, Any] | None
    ) -> Request:
        max_out = min(task.max_output_tokens or spec.max_output_tokens, spec.max_output_tokens)
        name = task.output_schema.__name__ if task.output_schema is not None else "output"
        return Request(
            model=spec,
            messages=messages,
            max_output_tokens=max_out,
            json_schema=schema,
            schema_name=name,
            tools=task.tools,
        )

    def _reserve(self, run: Run, spec: ModelSpec, request: Request) -> Reservation:
        est = math.ceil(count_messages(request.messages) * _INPUT_MARGIN) + _INPUT_SLACK
        worst = spec.worst_case_cost(est, request.max_output_tokens)
        return run.budget.reserve(worst, est + request.max_output_tokens, what=f"call to {spec.id}")

    async def _send(
        self,
        task: Task,
        decision: Decision,
        spec: ModelSpec,
        messages: tuple[Message, ...],
        schema: dict[str, Any] | None,
        run: Run,
    ) -> tuple[Completion, float | None, int]:
        """One provider call with the one retry loop (backoff honouring Retry-After)."""
        request = self._request(task, spec, messages, schema)
        provider = self.providers.get(spec.provider)
        limiter = self.limits.for_model(spec)
        attempt = 0
        while True:
            attempt += 1
            try:
                reservation = self._reserve(run, spec, request)
            except BudgetExceeded as exc:
                self._record(task, decision, spec, run, None, None, "refused", str(exc), messages)
                raise
            started = time.perf_counter()
            try:
                if limiter is not None:
                    await limiter.acquire()
                completion = await provider.complete(request)
            except ProviderError as exc:
                run.budget.release(reservation)
                self._record(
                    task,
                    decision,
                    spec,
                    run,
                    None,
                    None,
                    "error",
                    str(exc),
                    messages,
                    attempt=attempt,
                    latency_s=time.perf_counter() - started,
                )
                if not exc.retryable or attempt >= self.retry.max_attempts:
                    raise
                await asyncio.sleep(self._delay(attempt, exc.retry_after_s))
                continue
            except BaseException:
                run.budget.release(reservation)
                raise
            cost = spec.cost(completion.usage)
            run.budget.commit(reservation, cost, completion.usage.total_tokens)
            return completion, cost, attempt

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry.max_delay_s)
        # Full jitter: concurrent callers hit by the same outage spread out instead of retrying together.
        return random.uniform(0, min(self.retry.max_delay_s, self.retry.base_delay_s * 2 ** (attempt - 1)))

    def _fallback(self, spec: ModelSpec, tried: set[str]) -> ModelSpec | None:
        for model_id in self.fallbacks.get(spec.id, []):
            candidate = self.catalog.get(model_id)
            if candidate.id not in tried:
                return candidate
        up = self._escalate(spec)
        return up if up is not None and up.id not in tried else None

    def _escalate(self, spec: ModelSpec) -> ModelSpec | None:
        tier = spec.tier.up()
        while tier is not None:
            model_id = self.tiers.get(tier)
            if model_id is not None and model_id != spec.id:
                return self.catalog.get(model_id)
            tier = tier.up()
        return None

    def _record(
        self,
        task: Task,
        decision: Decision,
        spec: ModelSpec,
        run: Run,
        completion: Completion | None,
        cost: float | None,
        status: str,
        error: str | None,
        messages: tuple[Message, ...],
        *,
        attempt: int = 1,
        latency_s: float | None = None,
        operation: str = "chat",
    ) -> None:
        usage = completion.usage if completion is not None else Usage()
        latency = completion.latency_s if completion is not None else (latency_s or 0.0)
        output = None
        if completion is not None:
            output = completion.text
            if completion.tool_calls:
                output = json.dumps(
                    {
                        "text": completion.text,
                        "tool_calls": [
                            {"id": c.id, "name": c.name, "arguments": c.arguments}
                            for c in completion.tool_calls
                        ],
                    }
                )
        prompt = None
        if self.ledger.store_prompts:
            prompt = json.dumps([m.to_openai() for m in messages])
        kind = decision.kind.value
        self.ledger.record_call(
            CallRecord(
                run_id=run.id,
                task_kind=kind,
                tier=spec.tier.value,
                model=spec.id,
                provider=spec.provider,
                reason=decision.reason,
                status=status,
                step_id=task.step_id,
                attempt=attempt,
                operation=operation,
                served_model=completion.served_model if completion else None,
                input_tokens=usage.input_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                output_tokens=usage.output_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost_usd=cost,
                notional=spec.notional,
                latency_ms=latency * 1000,
                error=error,
                output=output,
                prompt=prompt,
                metadata={k: v for k, v in task.metadata.items() if isinstance(v, (str, int, float, bool))},
            )
        )
        # The span is opened after the fact with the call's real start time; its parent is the current
        # run's (or step's) span, carried by contextvars through asyncio tasks.
        start_ns = time.time_ns() - int(latency * 1e9)
        span = tracer().start_span(f"{operation} {spec.id}", start_time=start_ns)
        if error:
            span.set_status(StatusCode.ERROR, error[:200])
        span.set_attributes(
            call_attributes(
                operation=operation,
                provider=spec.provider,
                model=spec.id,
                served_model=completion.served_model if completion else None,
                tier=spec.tier.value,
                reason=decision.reason,
                usage=usage if completion else None,
                cost_usd=cost,
                run_id=run.id,
            )
        )
        span.end()

    # --- streams and embeddings ---------------------------------------------------------------------

    async def stream(self, task: Task, run: Run) -> AsyncIterator[str]:
        """Text deltas of one call; metered and recorded when the stream ends."""
        if not task.text.strip():
            raise InputError("the task's text is empty: pass the text or messages to run")
        task, decision = await self.decide(task, run)
        spec = self.catalog.get(decision.model)
        messages = task.messages()
        request = self._request(task, spec, messages, task.schema())
        reservation = self._reserve(run, spec, request)
        provider = self.providers.get(spec.provider)
        started = time.perf_counter()
        parts: list[str] = []
        final = None
        try:
            async for chunk in provider.stream(request):
                if chunk.delta:
                    parts.append(chunk.delta)
                    yield chunk.delta
                if chunk.usage is not None:
                    final = chunk
        except ProviderError as exc:
            run.budget.release(reservation)
            self._record(
                task,
                decision,
                spec,
                run,
                None,
                None,
                "error",
                str(exc),
                messages,
                operation="stream",
                latency_s=time.perf_counter() - started,
            )
            raise
        except BaseException:
            run.budget.release(reservation)
            raise
        usage = final.usage if final and final.usage else Usage()
        cost = spec.cost(usage)
        run.budget.commit(reservation, cost, usage.total_tokens)
        done = Completion(
            text="".join(parts),
            usage=usage,
            served_model=final.served_model if final else None,
            latency_s=time.perf_counter() - started,
        )
        self._record(task, decision, spec, run, done, cost, "ok", None, messages, operation="stream")

    async def embed(
        self,
        texts: list[str],
        run: Run,
        *,
        model: str | None = None,
        kind: TaskKind = TaskKind.PREPROCESS,
        reason: str = "embeddings",
    ) -> Embeddings:
        if not texts or any(not isinstance(t, str) for t in texts):
            raise InputError("embed needs a non-empty list of strings")
        spec = self.catalog.get(model or EMBED_MODEL)
        tokens = sum(count_texts(texts))
        reservation = run.budget.reserve(
            spec.worst_case_cost(tokens, 0), tokens, what=f"embedding with {spec.id}"
        )
        decision = Decision(spec.tier, spec.id, reason, kind, router="fixed")
        task = Task(input=texts[0][:200], kind=kind)
        try:
            result = await self.providers.get(spec.provider).embed(spec, texts)
        except BaseException as exc:
            run.budget.release(reservation)
            if isinstance(exc, ProviderError):
                self._record(task, decision, spec, run, None, None, "error", str(exc), (), operation="embed")
            raise
        cost = spec.cost(result.usage)
        run.budget.commit(reservation, cost, result.usage.total_tokens)
        done = Completion(
            text="", usage=result.usage, served_model=result.served_model, latency_s=result.latency_s
        )
        self._record(task, decision, spec, run, done, cost, "ok", None, (), operation="embed")
        return result
