"""The innermost layer: one attempt of one call on one model.

reserve the worst case → rate limit → send → commit the actual cost → record one event. ``call``,
``stream`` and ``embed`` all go through here, so a budget, a rate limit and a ledger record exist for
every request a provider sees, and for every request refused before it was sent.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from tierwise.core import Decision, Message, Task, Usage
from tierwise.errors import BudgetExceeded, ProviderError
from tierwise.ledger.records import new_id
from tierwise.models.spec import ModelSpec
from tierwise.models.tokens import bound_messages, bound_texts, count_messages, count_text, count_texts
from tierwise.providers.base import Completion, Embeddings, Request, StreamChunk
from tierwise.providers.registry import Providers
from tierwise.runtime.budget import Reservation
from tierwise.runtime.events import CallEvent, Recorder
from tierwise.runtime.limits import RateLimits

if TYPE_CHECKING:
    from tierwise.runtime.scope import Scope

T = TypeVar("T")

# Our token count is an estimate of the provider's; reserve a margin so the settled cost stays inside.
_INPUT_MARGIN = 1.15
_INPUT_SLACK = 32
_NOT_SENT = frozenset({"refused", "overrun"})


@dataclass(frozen=True, slots=True)
class Leg:
    """One call on one model: what every attempt of it sends, and how it is recorded."""

    task: Task
    decision: Decision
    spec: ModelSpec
    scope: Scope
    messages: tuple[Message, ...]
    schema: dict[str, Any] | None = None
    operation: str = "chat"
    # Write-ahead intents of requests sent and not yet recorded; shared by the legs of one call
    # (fallback makes new legs), whose attempts run one after another.
    pending: list[str] = field(default_factory=list, compare=False)

    def on(self, spec: ModelSpec, decision: Decision) -> Leg:
        return replace(self, spec=spec, decision=decision)

    def request(self) -> Request:
        spec, task = self.spec, self.task
        max_out = min(task.max_output_tokens or spec.max_output_tokens, spec.max_output_tokens)
        name = task.output_schema.__name__ if task.output_schema is not None else "output"
        return Request(
            model=spec,
            messages=self.messages,
            max_output_tokens=max_out,
            json_schema=self.schema,
            schema_name=name,
            tools=task.tools,
            temperature=task.temperature,
        )

    def event(self, status: str, **fields: Any) -> CallEvent:
        # A record of what a sent request did settles its intent; refusals and overrun marks do not.
        intent = self.pending.pop() if self.pending and status not in _NOT_SENT else None
        return CallEvent(
            self.task, self.decision, self.spec, self.scope, status, self.messages,
            operation=self.operation, intent=intent, **fields,
        )  # fmt: skip


def input_estimate(request: Request) -> int:
    """Input tokens to reserve: the messages, and the schema and tool definitions sent beside them."""
    n = count_messages(request.messages)
    extra = _definitions(request)
    if extra:
        n += sum(count_texts(extra))
    return math.ceil(n * _INPUT_MARGIN) + _INPUT_SLACK


def input_bound(request: Request) -> int:
    """Input tokens to reserve from byte lengths: never below what a byte-level tokenizer counts (so no
    margin for tokenizers' differences is needed), with no vocabulary loaded and no text tokenized."""
    return bound_messages(request.messages) + bound_texts(_definitions(request)) + _INPUT_SLACK


def _definitions(request: Request) -> list[str]:
    extra = [json.dumps(request.json_schema)] if request.json_schema is not None else []
    return extra + [json.dumps(t.parameters) + t.name + t.description for t in request.tools]


class Attempt:
    def __init__(self, providers: Providers, recorder: Recorder) -> None:
        self.providers = providers
        self.recorder = recorder
        self.limits = RateLimits()

    def _reserve(self, leg: Leg, usd: float | None, tokens: int, n: int, what: str) -> Reservation:
        try:
            return leg.scope.budget.reserve(usd, tokens, what=f"{what} {leg.spec.id}")
        except BudgetExceeded as exc:
            # Never sent, so it cost nothing: 0, not "unknown" (which would make a run's total unknown).
            self.recorder.record(leg.event("refused", cost=0.0, error=str(exc), attempt=n))
            raise

    def _reserve_call(self, leg: Leg, request: Request, n: int) -> Reservation:
        # Under a money or token cap, the tokenizer's count: the byte bound over-reserves the input (~4x
        # for English), and concurrent calls near the cap would fit fewer. With no such cap the amount
        # reserved limits nothing, and the bound needs no tokenizer (~0.5 s to load, ~50 µs a call).
        out = request.max_output_tokens
        est = input_estimate(request) if leg.scope.budget.caps_spend else input_bound(request)
        return self._reserve(leg, leg.spec.worst_case_cost(est, out), est + out, n, "call to")

    async def _send(
        self, leg: Leg, reservation: Reservation, n: int, send: Callable[[], Awaitable[T]]
    ) -> tuple[T, float]:
        """Rate limit, then send; a fault gives the reservation back and is recorded. Returns the value
        and when the request started (for latency)."""
        started = time.perf_counter()
        try:
            limiter = self.limits.for_model(leg.spec)
            if limiter is not None:
                await limiter.acquire()
            await self._intend(leg, reservation)
            return await send(), started
        except ProviderError as exc:
            self._failed(leg, reservation, exc, n, started)
            raise
        except BaseException:
            leg.scope.budget.release(reservation)
            raise

    async def _intend(self, leg: Leg, reservation: Reservation) -> None:
        """Write the call down before it leaves, so a crash mid-call cannot lose a paid request.
        Off the event loop, in a group commit with the other calls in flight: the write is durable (and
        waits out a database restart)."""
        intent = new_id()
        d, spec = leg.decision, leg.spec
        reserved = reservation.usd if spec.input_per_mtok is not None else None
        await self.recorder.sink.intend(
            {
                "id": intent, "run_id": leg.scope.id, "step_id": leg.task.step_id,
                "operation": leg.operation, "task_kind": d.kind.value, "tier": spec.tier.value,
                "model": spec.id, "provider": spec.provider, "reason": d.reason,
                "reserved_usd": reserved, "notional": spec.notional,
            }
        )  # fmt: skip
        leg.pending.append(intent)

    def _failed(self, leg: Leg, reservation: Reservation, exc: ProviderError, n: int, started: float) -> None:
        leg.scope.budget.release(reservation)
        self.recorder.record(
            leg.event("error", error=str(exc), attempt=n, latency_s=time.perf_counter() - started)
        )

    def _settle(self, leg: Leg, reservation: Reservation, usage: Usage) -> float | None:
        cost = leg.spec.cost(usage)
        overrun = leg.scope.budget.commit(reservation, cost, usage.total_tokens)
        if overrun is not None:
            # The call itself is recorded (with its full cost) by the caller; this marks where the cap
            # was passed, so the ledger shows it and the run ends as "overrun".
            meta = {"overrun_usd": overrun.over_usd, "reserved_usd": reservation.usd, "billed_usd": cost}
            self.recorder.record(leg.event("overrun", cost=0.0, error=str(overrun), metadata=meta))
        return cost

    async def complete(self, leg: Leg, n: int) -> tuple[Completion, float | None]:
        """One completion. The caller records the outcome (ok, invalid_output, rejected) once it knows it."""
        request = leg.request()
        reservation = self._reserve_call(leg, request, n)
        provider = self.providers.get(leg.spec.provider)
        completion, _ = await self._send(leg, reservation, n, lambda: provider.complete(request))
        return completion, self._settle(leg, reservation, completion.usage)

    async def open_stream(self, leg: Leg, n: int) -> LiveStream:
        """Start a stream and wait for its first chunk (retries and fallback apply up to here)."""
        request = leg.request()
        reservation = self._reserve_call(leg, request, n)
        chunks = aiter(self.providers.get(leg.spec.provider).stream(request))
        first, started = await self._send(leg, reservation, n, lambda: anext(chunks, None))
        return LiveStream(self, leg, request, reservation, chunks, first, started, n)

    async def embed(self, leg: Leg, texts: list[str], n: int) -> tuple[Embeddings, float | None]:
        tokens = sum(count_texts(texts))
        spec = leg.spec
        reservation = self._reserve(leg, spec.worst_case_cost(tokens, 0), tokens, n, "embedding with")
        provider = self.providers.get(spec.provider)
        result, _ = await self._send(leg, reservation, n, lambda: provider.embed(spec, texts))
        cost = self._settle(leg, reservation, result.usage)
        done = Completion(
            text="", usage=result.usage, served_model=result.served_model, latency_s=result.latency_s
        )
        self.recorder.record(leg.event("ok", completion=done, cost=cost, attempt=n))
        return result, cost


class LiveStream:
    """A stream past its first chunk: yields deltas, then settles and records the call once it ends.

    Usage comes from the stream's final chunk; when the provider sends none, it is estimated with our
    token counter and the record says so (``usage_estimated``).
    """

    def __init__(
        self,
        attempt: Attempt,
        leg: Leg,
        request: Request,
        reservation: Reservation,
        chunks: AsyncIterator[StreamChunk],
        first: StreamChunk | None,
        started: float,
        n: int,
    ) -> None:
        self._a, self.leg, self._request, self._reservation = attempt, leg, request, reservation
        self._chunks, self._first, self._started, self.n = chunks, first, started, n
        self.parts: list[str] = []
        self.completion: Completion | None = None
        self.cost: float | None = None
        self.estimated = False
        self.served: str | None = None

    async def deltas(self) -> AsyncIterator[str]:
        final: StreamChunk | None = None
        finish: str | None = None
        try:
            chunk = self._first
            while chunk is not None:
                if chunk.delta:
                    self.parts.append(chunk.delta)
                    yield chunk.delta
                if chunk.usage is not None:
                    final = chunk
                finish = chunk.finish_reason or finish
                self.served = chunk.served_model or self.served
                chunk = await anext(self._chunks, None)
        except ProviderError as exc:
            self._a._failed(self.leg, self._reservation, exc, self.n, self._started)
            raise
        except BaseException:
            # Cancelled or abandoned mid-stream: close the upstream request now (the provider stops
            # generating), then settle the estimate of what was generated, not the reserved worst case.
            close = getattr(self._chunks, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
            self._finish(None, finish)
            ev = self.leg.event(
                "error", completion=self.completion, cost=self.cost, attempt=self.n,
                error="stream abandoned before its end", metadata={"usage_estimated": True},
            )  # fmt: skip
            self._a.recorder.record(ev)
            raise
        self._finish(final, finish)

    def _finish(self, final: StreamChunk | None, finish: str | None) -> None:
        text = "".join(self.parts)
        self.estimated = final is None or final.usage is None
        if self.estimated:
            usage = Usage(
                input_tokens=count_messages(self._request.messages),
                output_tokens=count_text(text) if text else 0,
            )
        else:
            assert final is not None and final.usage is not None
            usage = final.usage
        self.cost = self._a._settle(self.leg, self._reservation, usage)
        self.completion = Completion(
            text=text,
            usage=usage,
            served_model=self.served,
            latency_s=time.perf_counter() - self._started,
            finish_reason=finish,
            extra=final.extra if final is not None else {},
        )
