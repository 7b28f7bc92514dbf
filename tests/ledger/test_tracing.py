"""OpenTelemetry spans follow the GenAI semantic conventions and nest under their run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import chaos_config, tw
from tierwise.testing import ChaosServer

# A separate interpreter: OpenTelemetry's global tracer provider can be set once per process.
SCRIPT = """
import asyncio, json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
import tierwise

async def main():
    async with tierwise.Session(sys.argv[1]) as s:
        await s.call("label this", kind="classify")
asyncio.run(main())
spans = exporter.get_finished_spans()
print(json.dumps([{"name": sp.name, "parent": sp.parent.span_id if sp.parent else None,
                   "id": sp.context.span_id, "attrs": dict(sp.attributes)} for sp in spans]))
"""


def test_call_spans_carry_gen_ai_attributes_under_the_run_span(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(
        {
            "rules": [
                {
                    "reply": {
                        "text": "ok",
                        "served_model": "nano-2026",
                        "usage": {"cached_tokens": 3, "reasoning_tokens": 2},
                    }
                }
            ]
        }
    )
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/l.db"))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(toml)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    spans = json.loads(out.stdout.strip().splitlines()[-1])
    run = next(s for s in spans if s["name"] == "run ask")
    call = next(s for s in spans if s["name"] == "chat chaos/nano")
    assert call["parent"] == run["id"]
    a = call["attrs"]
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "chaos/nano" and a["gen_ai.response.model"] == "nano-2026"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.usage.cache_read.input_tokens"] == 3 and a["gen_ai.usage.reasoning.output_tokens"] == 2
    assert (
        a["tierwise.tier"] == "nano"
        and a["tierwise.cost_usd"] > 0
        and "classify" in a["tierwise.decision.reason"]
    )


def test_console_spans_go_to_stderr_redacted_and_json_output_stays_json(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    # The first answer fails the schema and the validation error quotes a key; the repair succeeds.
    key = "sk-proj-" + "Qw3rTy" * 8
    chaos_server.set_script(
        {
            "rules": [
                {"times": 1, "reply": {"json": {"label": key}}},
                {"reply": {"json": {"label": "bug"}}},
            ]
        }
    )
    (tmp_path / "tierwise.toml").write_text(
        chaos_config(chaos_server.base_url, "sqlite:///l.db", '[tracing]\nexporter = "console"\n')
    )
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"label": {"enum": ["bug", "feature"]}}}))
    out = tw("ask", "Label this", "--kind", "classify", "--schema", str(schema), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["output"] == {"label": "bug"}  # spans did not land on stdout
    assert '"name": "chat chaos/nano"' in out.stderr and '"status_code": "ERROR"' in out.stderr
    assert "[REDACTED]" in out.stderr and key not in out.stderr and key not in out.stdout


def test_redacting_exporter_covers_attributes_status_events_and_links() -> None:
    # A private provider (not the global one): the exporter is what tierwise installs around any other.
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tierwise.ledger.tracing import RedactingExporter

    key = "sk-ant-api03-" + "Zx9_Yw8-" * 6
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(memory)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("other") as other:
        pass
    link = trace.Link(other.get_span_context(), {"why": f"token={key}"})
    try:
        with tracer.start_as_current_span(f"call {key}", links=[link]) as span:
            span.set_attribute("tierwise.error", f"bad output: {key}")
            span.set_attribute("tierwise.list", [key, "ok"])
            span.set_attribute("tierwise.cost_usd", 0.5)
            raise ValueError(f"the model said {key}")
    except ValueError:
        pass
    exported = memory.get_finished_spans()[-1]
    text = exported.to_json()
    assert key not in text
    assert exported.attributes is not None and exported.attributes["tierwise.cost_usd"] == 0.5
    assert exported.attributes["tierwise.list"] == ("[REDACTED]", "ok")
    assert exported.status.description == "ValueError: the model said [REDACTED]"
    assert exported.events[0].attributes is not None
    assert "[REDACTED]" in str(exported.events[0].attributes["exception.stacktrace"])
