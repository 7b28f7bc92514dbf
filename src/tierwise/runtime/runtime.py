"""The one path every model call takes: route → budget → provider → validate → ledger.

In layers, as httpx's send chain: ``Escalate`` (validate, repair, escalate, climb a cascade) wraps
``Fallback`` (bounded retries, then the next model) wraps ``Attempt`` (reserve → rate limit → send →
commit → record). ``call``, ``stream`` and ``embed`` share them; ``decide`` runs kind inference once and
hands the router a metered ``call`` for routers that need a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from tierwise.core import Decision, Task, TaskKind, Tier, layer_of
from tierwise.errors import InputError, RoutingError
from tierwise.models.catalog import Catalog
from tierwise.models.spec import ModelSpec
from tierwise.providers.base import Completion, Embeddings
from tierwise.providers.registry import Providers
from tierwise.routing.base import Router
from tierwise.routing.kinds import KindGuess, KindInferrer
from tierwise.runtime.attempt import Attempt, Leg, LiveStream
from tierwise.runtime.breaker import Breakers
from tierwise.runtime.escalate import Escalate, Outcome
from tierwise.runtime.events import CallEvent, CallSink, Recorder
from tierwise.runtime.fallback import Fallback, RetryPolicy
from tierwise.runtime.result import Result
from tierwise.runtime.scope import Scope
from tierwise.runtime.shadow import JudgeVerdict, ShadowSampler, agreement, judge_messages
from tierwise.runtime.validation import OutputInvalid, validate

__all__ = ["EMBED_MODEL", "CallEvent", "CallSink", "RetryPolicy", "Runtime", "Stream"]

EMBED_MODEL = "local/e5-small"


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
        self.inferrer = inferrer
        self.shadow = shadow
        self.recorder = Recorder(ledger)
        self.attempt = Attempt(providers, self.recorder)
        breakers = Breakers(retry.breaker_failures, retry.breaker_cooldown_s, on_change=ledger.record_circuit)
        usable = lambda m: providers.usable(m.provider)  # noqa: E731 - a one-line predicate
        self.fallback = Fallback(catalog, self.tiers, retry, fallbacks, usable=usable, breakers=breakers)
        self.escalate = Escalate(self.fallback, self.recorder, catalog, retry.repair_attempts)

    def large_model(self) -> ModelSpec | None:
        return self.catalog.find(self.tiers[Tier.LARGE]) if Tier.LARGE in self.tiers else None

    # --- routing ------------------------------------------------------------------------------------

    async def decide(self, task: Task, scope: Scope) -> tuple[Task, Decision]:
        """The routing decision, after inferring a missing kind (once, a metered nano embedding call)."""
        task = await self._with_kind(task, scope)
        swapped = None
        layers = scope.layer_tiers  # the layer-swap experiment's arm
        if layers and task.kind is not None and task.model is None:
            swapped = layers.get(layer_of(task.kind))
            if swapped is not None:
                task = replace(task, tier=swapped)
        calls: list[int] = [0]
        decision = await self.router.route(task, self._routing_call(scope, task, calls))
        if calls[0]:
            decision = replace(decision, routing_calls=calls[0])
        if swapped is not None:
            decision = replace(
                decision,
                reason=f"layer swap: {layer_of(decision.kind).value} layer on {swapped.value}; "
                + decision.reason,
            )
        if task.metadata.get("kind_inferred"):
            sim = float(task.metadata.get("kind_similarity", 0.0))
            how = task.metadata.get("kind_via") or f"similarity {sim:.2f}"
            why = f"kind {decision.kind.value} inferred from the text ({how}); "
            decision = replace(decision, reason=why + decision.reason)
        if task.kind is None:
            task = replace(task, kind=decision.kind)
        return task, decision

    async def _with_kind(self, task: Task, scope: Scope) -> Task:
        if task.kind is not None or self.inferrer is None or task.model is not None:
            return task
        # The static classifier is local CPU (~0.2 ms, no model call, nothing metered); only when it is
        # unsure does the metered e5 embedding decide. With a tier pinned the kind routes nothing (it is
        # recorded, and read by the layer swap), so the static guess stands and e5 is never paid for.
        guess = self.inferrer.classify(task.text, settle=task.tier is not None)
        if guess is None:
            emb = await self.embed([task.text], scope, kind=TaskKind.PREPROCESS, reason="kind inference")
            guess = self.inferrer.from_vector(emb.vectors[0], task.text)
        return _with_guess(task, guess)

    def infer_kinds(self, tasks: Sequence[Task]) -> list[Task]:
        """The static classifier over many tasks at once (a batch's block): each task whose kind it
        settles comes back with it, as ``call`` would have inferred it one at a time; the others (and
        tasks with a kind or a pinned model) come back as they were, for ``call`` to infer."""
        todo = [i for i, t in enumerate(tasks) if t.kind is None and t.model is None]
        out = list(tasks)
        if self.inferrer is None or not todo:
            return out
        # Like _with_kind: a task with a pinned tier takes the static guess even when it is unsure.
        for settle in (True, False):
            idx = [i for i in todo if (tasks[i].tier is not None) is settle]
            guesses = self.inferrer.classify_many([tasks[i].text for i in idx], settle=settle)
            for i, guess in zip(idx, guesses, strict=True):
                if guess is not None:
                    out[i] = _with_guess(tasks[i], guess)
        return out

    def _routing_call(self, scope: Scope, parent: Task, counter: list[int]):
        """The ``call`` a router (or a cascade's validator) is handed: pinned, metered, budgeted, recorded
        as a routing call (operation ``route``); it returns the completion's text."""

        async def call(t: Task) -> str:
            if t.model is not None:
                spec = self.catalog.get(t.model)
            elif t.tier is not None and t.tier in self.tiers:
                spec = self.catalog.get(self.tiers[t.tier])
            else:
                raise RoutingError("a router's own call must pin a model or a mapped tier")
            counter[0] += 1
            d = Decision(
                spec.tier, spec.id, f"routing call by the {self.router.name} router",
                t.kind or TaskKind.VALIDATE, router="fixed",
            )  # fmt: skip
            t = replace(t, step_id=t.step_id or parent.step_id, metadata={**t.metadata, "routing": True})
            leg = Leg(t, d, spec, scope, t.messages(), t.schema(), operation="route")
            (completion, cost), leg, n = await self.fallback.run(
                leg, self.attempt.complete, [], tier_up=False
            )
            self.recorder.record(leg.event("ok", completion=completion, cost=cost, attempt=n))
            return completion.text

        return call

    # --- the one path -------------------------------------------------------------------------------

    async def call(self, task: Task, scope: Scope, *, decision: Decision | None = None) -> Result:
        _check_text(task)
        if decision is None:
            task, decision = await self.decide(task, scope)
        elif task.kind is None:
            task = replace(task, kind=decision.kind)
        leg = self._leg(task, decision, scope, "chat")
        out = await self.escalate.run(leg, self.attempt.complete, self._routing_call(scope, task, [0]))
        return self._result(out, scope)

    def stream(self, task: Task, scope: Scope) -> Stream:
        """Text deltas of one call, through the same layers as ``call`` (see ``Stream``)."""
        _check_text(task)
        return Stream(self, task, scope)

    async def embed(
        self,
        texts: list[str],
        scope: Scope,
        *,
        model: str | None = None,
        kind: TaskKind = TaskKind.PREPROCESS,
        reason: str = "embeddings",
    ) -> Embeddings:
        if not texts or any(not isinstance(t, str) for t in texts):
            raise InputError("embed needs a non-empty list of strings")
        spec = self.catalog.get(model or EMBED_MODEL)
        decision = Decision(spec.tier, spec.id, reason, kind, router="fixed")
        leg = Leg(Task(input=texts[0][:200], kind=kind), decision, spec, scope, (), operation="embed")

        async def send(leg: Leg, n: int) -> Embeddings:
            return (await self.attempt.embed(leg, texts, n))[0]

        result, _, _ = await self.fallback.run(leg, send, [], tier_up=False)
        return result

    # --- pieces -------------------------------------------------------------------------------------

    def _leg(self, task: Task, decision: Decision, scope: Scope, operation: str) -> Leg:
        spec = self.catalog.get(decision.model)
        return Leg(task, decision, spec, scope, task.messages(), task.schema(), operation)

    def _result(self, out: Outcome, scope: Scope) -> Result:
        leg, completion = out.leg, out.completion
        if self.shadow is not None and leg.decision.tier is not Tier.LARGE and self.shadow.wants():
            self._shadow(leg, completion.text, len(out.notes), out.cost)
        return Result(
            text=completion.text,
            output=out.output,
            decision=leg.decision,
            model=leg.spec.id,
            served_model=completion.served_model,
            usage=out.usage,
            cost_usd=out.cost,
            notional=leg.spec.notional,
            latency_s=completion.latency_s,
            attempts=out.attempts,
            run_id=scope.id,
            tool_calls=completion.tool_calls,
            escalations=tuple(out.notes),
        )

    # --- shadow checks ------------------------------------------------------------------------------

    def _shadow(self, routed: Leg, answer: str, escalations: int, routed_cost: float | None) -> None:
        """Send the task to the large tier in the background, on the shadow budget; record agreement.

        The shadow record is also an outcome row (``tierwise eval train --from-ledger``): it carries the
        routed model, what its answer cost, and, with ``[shadow] judge = true``, a judge's score of both.
        """
        assert self.shadow is not None
        sampler = self.shadow
        large = self.large_model()
        if large is None:
            return
        task, scope = routed.task, routed.scope
        meta = {
            **task.metadata,
            "shadow": True,
            "routed_model": routed.spec.id,
            "routed_tier": routed.spec.tier.value,
            "routed_cost_usd": routed_cost,
            "escalations": escalations,
        }
        shadow_scope = Scope(id=scope.id, kind=scope.kind, budget=sampler.budget, label=scope.label)
        decision = replace(
            routed.decision, tier=Tier.LARGE, model=large.id, reason="shadow check of the routed call",
            escalation=None,
        )  # fmt: skip
        leg = Leg(replace(task, metadata=meta), decision, large, shadow_scope, task.messages(),
                  task.schema(), operation="shadow")  # fmt: skip

        async def job() -> None:
            completion, cost = await self.attempt.complete(leg, 1)
            score = agreement(answer, completion.text)
            scores = await self._judge(leg, answer, completion.text) if sampler.judge else {}
            scored = {"agreement": round(score, 4), "agree": score >= sampler.agree_at, **scores}
            self.recorder.record(leg.event("ok", completion=completion, cost=cost, metadata=scored))

        sampler.spawn(job)

    async def _judge(self, shadow: Leg, routed_answer: str, large_answer: str) -> dict[str, float]:
        """A large-tier judge scores both answers (order randomised against position bias), 0–1 each.

        An invalid verdict is recorded and yields no scores: the shadow row then carries agreement only.
        """
        assert self.shadow is not None
        flip = self.shadow.flip()
        task = shadow.task
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
            Tier.LARGE, shadow.spec.id, "shadow judge of the routed and large answers", TaskKind.FINAL_QA
        )
        leg = Leg(judge_task, decision, shadow.spec, shadow.scope, judge_task.messages(),
                  judge_task.schema(), operation="judge")  # fmt: skip
        completion, cost = await self.attempt.complete(leg, 1)
        try:
            verdict = validate(completion.text, model=JudgeVerdict)
        except OutputInvalid as bad:
            self.recorder.record(
                leg.event("invalid_output", completion=completion, cost=cost, error=bad.detail)
            )
            return {}
        self.recorder.record(leg.event("ok", completion=completion, cost=cost))
        routed_score, large_score = verdict.scores(flip=flip)
        return {"routed_score": routed_score, "large_score": large_score}


class Stream:
    """A streamed call: ``async for delta in stream`` yields text; ``stream.result`` holds the Result after.

    Free text streams as it comes: retries and fallback apply until the first token, the budget and rate
    limits like any call, usage from the final chunk (estimated and marked when the provider sends none).
    Structured output and cascades are validated before anything is yielded: the caller gets the
    validated answer (``result.output``) or an error, never unvalidated structured text.

    ``await stream.start()`` runs everything up to the first token and returns the decision of the model
    that answers (after any fallback), so a server can send its headers, or an error status, before the
    body. Stopping early (``aclose``, a cancelled task) closes the upstream stream and records what was
    generated so far, estimated, instead of the worst case.
    """

    def __init__(self, runtime: Runtime, task: Task, scope: Scope) -> None:
        self._rt, self._task, self._scope = runtime, task, scope
        self.result: Result | None = None
        self.decision: Decision | None = None  # set by start(): the model that answers
        self.model: str | None = None  # its catalog id
        self._leg: Leg | None = None
        self._live: LiveStream | None = None
        self._n = 1
        self._notes: list[str] = []

    def __aiter__(self) -> AsyncIterator[str]:
        return self._run()

    async def start(self) -> Decision:
        """Route and open the call up to its first token (idempotent); errors before any output raise here."""
        if self.decision is not None:
            return self.decision
        rt, scope = self._rt, self._scope
        task, decision = await rt.decide(self._task, scope)
        leg = rt._leg(task, decision, scope, "stream")
        if leg.schema is None and decision.escalation is None and not task.tools:
            self._live, leg, self._n = await rt.fallback.run(leg, rt.attempt.open_stream, self._notes)
        else:
            out = await rt.escalate.run(leg, self._collected(task), rt._routing_call(scope, task, [0]))
            self.result = rt._result(out, scope)
            leg = out.leg
        self._leg = leg
        self.model = leg.spec.id
        self.decision = leg.decision
        return leg.decision

    def _collected(self, task: Task) -> Callable[[Leg, int], Awaitable[tuple[Completion, float | None]]]:
        rt = self._rt

        async def collect(leg: Leg, n: int) -> tuple[Completion, float | None]:
            live = await rt.attempt.open_stream(leg, n)
            async for _ in live.deltas():
                pass
            assert live.completion is not None
            return live.completion, live.cost

        # A tool-calling turn is not streamed (the stream protocol carries text only).
        return rt.attempt.complete if task.tools else collect

    async def _run(self) -> AsyncIterator[str]:
        await self.start()
        live, leg = self._live, self._leg
        if live is None:
            assert self.result is not None
            if self.result.text:
                yield self.result.text
            return
        assert leg is not None
        deltas = live.deltas()
        try:
            async for delta in deltas:
                yield delta
        finally:
            # A caller that stops early (a client gone) must not leave the upstream stream open until GC:
            # closing it now settles and records what was generated so far.
            await deltas.aclose()
        assert live.completion is not None
        rt = self._rt
        meta = {"escalations": len(self._notes), "usage_estimated": live.estimated}
        rt.recorder.record(
            leg.event("ok", completion=live.completion, cost=live.cost, attempt=self._n, metadata=meta)
        )
        out = Outcome(
            live.completion, live.completion.text, leg, live.completion.usage, live.cost, self._n, self._notes
        )
        self.result = rt._result(out, self._scope)


def _with_guess(task: Task, guess: KindGuess) -> Task:
    ambiguity = task.ambiguity if task.ambiguity is not None else guess.ambiguity
    meta = {
        **task.metadata,
        "kind_inferred": True,
        "kind_similarity": round(guess.score, 4),
        "kind_via": guess.describe(),
    }
    return replace(task, kind=guess.kind, ambiguity=ambiguity, metadata=meta)


def _check_text(task: Task) -> None:
    if not task.text.strip():
        raise InputError("the task's text is empty: pass the text or messages to run")
