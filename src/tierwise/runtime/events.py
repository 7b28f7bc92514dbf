"""One typed event per attempt, and the recorder that turns it into a ledger record and a trace span.

Every layer of the runtime (attempt, fallback, validate/escalate, shadow, routing calls) reports what
happened as a ``CallEvent``; ``Recorder.record`` is the only place that writes call records.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.trace import StatusCode

from tierwise.core import Decision, Message, Task, Usage
from tierwise.ledger.records import CallRecord
from tierwise.ledger.redact import redact
from tierwise.ledger.tracing import call_attributes, tracer
from tierwise.models.spec import ModelSpec
from tierwise.providers.base import Completion

if TYPE_CHECKING:
    from tierwise.runtime.scope import Scope


class CallSink(Protocol):
    """Where call records go (the Ledger); kept minimal so the runtime does not depend on storage."""

    store_prompts: bool

    def record_call(self, record: CallRecord) -> None: ...

    def record_circuit(self, model: str, state: str, failures: int, why: str) -> None:
        """A model's circuit breaker changed state (open, half_open, closed)."""
        ...

    async def intend(self, row: dict[str, Any]) -> None:
        """Durably note a call about to be sent (cleared when its record is written)."""
        ...


@dataclass(frozen=True, slots=True)
class CallEvent:
    """What one attempt did: ok | error | invalid_output | refused | rejected (by a cascade validator) |
    opinion (one answer of a cascade's vote, judged with the others)."""

    task: Task
    decision: Decision
    spec: ModelSpec
    scope: Scope
    status: str
    messages: tuple[Message, ...] = ()
    completion: Completion | None = None
    cost: float | None = None
    error: str | None = None
    attempt: int = 1
    latency_s: float | None = None
    operation: str = "chat"
    metadata: dict[str, Any] = field(default_factory=dict)
    intent: str | None = None  # the write-ahead intent this record settles


class Recorder:
    def __init__(self, sink: CallSink) -> None:
        self.sink = sink

    def record(self, ev: CallEvent) -> None:
        completion = ev.completion
        usage = completion.usage if completion is not None else Usage()
        latency = completion.latency_s if completion is not None else (ev.latency_s or 0.0)
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
        if self.sink.store_prompts and ev.messages:
            prompt = json.dumps([m.to_openai() for m in ev.messages])
        meta = {k: v for k, v in ev.task.metadata.items() if isinstance(v, (str, int, float, bool))}
        if completion is not None:
            meta.update(completion.extra)
        meta.update(ev.metadata)
        if ev.intent is not None:
            meta["intent_id"] = ev.intent
        spec, decision = ev.spec, ev.decision
        self.sink.record_call(
            CallRecord(
                run_id=ev.scope.id,
                task_kind=decision.kind.value,
                tier=spec.tier.value,
                model=spec.id,
                provider=spec.provider,
                reason=decision.reason,
                status=ev.status,
                step_id=ev.task.step_id,
                attempt=ev.attempt,
                operation=ev.operation,
                served_model=completion.served_model if completion else None,
                input_tokens=usage.input_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                output_tokens=usage.output_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost_usd=ev.cost,
                notional=spec.notional,
                latency_ms=latency * 1000,
                error=ev.error,
                output=output,
                prompt=prompt,
                metadata=meta,
            )
        )
        ev.scope.progress.on_call(ev.cost, ev.status)
        # The span is opened after the fact with the call's real start time; its parent is the current
        # run's (or step's) span, carried by contextvars through asyncio tasks.
        start_ns = time.time_ns() - int(latency * 1e9)
        span = tracer().start_span(f"{ev.operation} {spec.id}", start_time=start_ns)
        if ev.error:
            # Redacted before it is cut: a key cut in half would no longer look like one. (The exporter
            # redacts again; this covers a tracer provider the user installed themselves.)
            span.set_status(StatusCode.ERROR, redact(ev.error)[:200])
        span.set_attributes(
            call_attributes(
                operation=ev.operation,
                provider=spec.provider,
                model=spec.id,
                served_model=completion.served_model if completion else None,
                tier=spec.tier.value,
                reason=decision.reason,
                usage=usage if completion else None,
                cost_usd=ev.cost,
                run_id=ev.scope.id,
            )
        )
        span.end()
