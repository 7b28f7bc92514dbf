"""OpenTelemetry spans for model calls, with the GenAI semantic-convention attributes.

Every span tierwise exports passes through ``RedactingExporter``: attributes, status, events (an
exception's message and stack trace) and links are redacted on their way out, whoever set them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, Status

from tierwise.ledger.redact import redact, redact_obj

_configured = False


class RedactingExporter(SpanExporter):
    """Hands ``inner`` copies of the spans with every string in them redacted."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redact_span(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _attrs(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    # Attribute values are strings, numbers or sequences of them: redact_obj keeps their shape.
    return None if attributes is None else {k: redact_obj(v) for k, v in attributes.items()}


def redact_span(span: ReadableSpan) -> ReadableSpan:
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    return ReadableSpan(
        name=redact(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_attrs(span.attributes),
        events=[Event(redact(e.name), _attrs(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, _attrs(link.attributes)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def configure(exporter: str | SpanExporter, endpoint: str | None = None) -> None:
    """Install a tracer provider once per process: ``none`` keeps OpenTelemetry's no-op tracer.

    ``exporter`` is ``none``, ``console`` (spans on stderr: stdout is the command's output, which
    ``--json`` promises is JSON), ``otlp``, or an exporter object (tests pass an in-memory one).
    """
    global _configured
    if _configured or exporter == "none":
        return
    span_exporter: SpanExporter
    if isinstance(exporter, SpanExporter):
        span_exporter = exporter
    elif exporter == "console":
        span_exporter = ConsoleSpanExporter(out=sys.stderr)
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            from tierwise.errors import ConfigError

            raise ConfigError(
                "tracing.exporter = 'otlp' needs the OTLP exporter: pip install 'tierwise[otlp]'"
            ) from None
        span_exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    else:
        from tierwise.errors import ConfigError

        raise ConfigError(f"tracing.exporter {exporter!r} is not one of none, console, otlp")
    provider = TracerProvider(resource=Resource.create({"service.name": "tierwise"}))
    provider.add_span_processor(BatchSpanProcessor(RedactingExporter(span_exporter)))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer() -> trace.Tracer:
    return trace.get_tracer("tierwise")


def call_attributes(
    *,
    operation: str,
    provider: str,
    model: str,
    served_model: str | None,
    tier: str,
    reason: str,
    usage: Any | None,
    cost_usd: float | None,
    run_id: str,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "tierwise.tier": tier,
        "tierwise.decision.reason": reason,
        "tierwise.run_id": run_id,
    }
    if served_model:
        attrs["gen_ai.response.model"] = served_model
    if usage is not None:
        attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
        attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
        attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
        attrs["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if cost_usd is not None:
        attrs["tierwise.cost_usd"] = cost_usd
    return attrs
