"""OpenTelemetry spans for model calls, with the GenAI semantic-convention attributes."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

_configured = False


def configure(exporter: str, endpoint: str | None = None) -> None:
    """Install a tracer provider once per process: ``none`` keeps OpenTelemetry's no-op tracer."""
    global _configured
    if _configured or exporter == "none":
        return
    span_exporter: SpanExporter
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
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
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
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
