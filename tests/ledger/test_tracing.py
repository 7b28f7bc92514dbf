"""OpenTelemetry spans follow the GenAI semantic conventions and nest under their run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import chaos_config
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
