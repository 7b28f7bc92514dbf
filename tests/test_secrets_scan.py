"""No planted secret in anything tierwise writes: ledger, spans, logs, CLI output and errors.

The planted values (tests/secrets_scan.py) are in the environment for the whole run, as a user's keys
would be. Here they go into goals, plans, model replies, tool arguments (so tool errors) and validation
errors; then every file under the test's directory, the captured stdout/stderr and the exported spans
are scanned for them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests import secrets_scan
from tests.conftest import chaos_config, tw
from tests.secrets_scan import PLANTED, PLANTED_KEY, PLANTED_TOKEN, found_in, scan_tree
from tierwise import Session
from tierwise.config import Config
from tierwise.ledger import Ledger
from tierwise.testing import ChaosServer

REPO = Path(__file__).resolve().parents[1]
GOAL = f"Find where {PLANTED_KEY} is used and rotate {PLANTED_TOKEN}"
LOOK = {"model": "mini-model", "has_tools": True}


def secret_script() -> dict:
    """A chaos script that puts the planted values everywhere a model can put text."""
    plan = {
        "steps": [
            {
                "id": "look",
                "kind": "code_search",
                "tier": "mini",
                "instruction": f"find uses of {PLANTED_KEY}",
                "depends_on": [],
            },
            {
                "id": "label",
                "kind": "classify",
                "tier": "nano",
                "instruction": f"label each line mentioning {PLANTED_TOKEN}",
                "depends_on": ["look"],
                "items": [f"line with {PLANTED_KEY}", "plain line"],
            },
        ]
    }
    # The first plan has a field named by the key: the schema's validation error quotes it. Its repair
    # names a step that does not exist: the planner's own check quotes the key again.
    bad_schema = {**plan, PLANTED_KEY: PLANTED_TOKEN}
    bad_plan = {"steps": [{**plan["steps"][0], "depends_on": [PLANTED_KEY]}]}
    verdict = {"answer": f"rotate {PLANTED_KEY}", "complete": True, "rerun": [], "feedback": PLANTED_TOKEN}
    return {
        "rules": [
            {
                "match": {"model": "large-model", "user_contains": "That plan is invalid"},
                "reply": {"json": plan},
            },
            *(
                {
                    "times": 1,
                    "match": {"model": "large-model", "system_contains": "You are the planner"},
                    "reply": {"json": bad},
                }
                for bad in (bad_schema, bad_plan)
            ),
            {
                "match": {"model": "large-model", "system_contains": "You are the planner"},
                "reply": {"json": plan},
            },
            {
                "match": {"model": "large-model", "system_contains": "final answer"},
                "reply": {"json": verdict},
            },
            # A tool call on a path made of the secrets: the tool's error quotes it back.
            {
                "times": 1,
                "match": LOOK,
                "reply": {
                    "tool_calls": [
                        {"name": "read_file", "arguments": {"path": f"{PLANTED_TOKEN}/{PLANTED_KEY}.env"}}
                    ]
                },
            },
            {
                "match": LOOK,
                "reply": {"text": f"config.py sets API_KEY={PLANTED_KEY}; token {PLANTED_TOKEN}"},
            },
            {"match": {"model": "nano-model"}, "reply": {"json": {"results": [PLANTED_KEY, PLANTED_TOKEN]}}},
        ]
    }


def _config(server: ChaosServer, tmp_path: Path, tracing: str = "none") -> Path:
    text = chaos_config(
        server.base_url, f"sqlite:///{tmp_path}/ledger.db", f'[tracing]\nexporter = "{tracing}"\n'
    )
    toml = tmp_path / "tierwise.toml"
    toml.write_text(text.replace("[ledger]\n", "[ledger]\nstore_prompts = true\n", 1))
    return toml


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "config.py").write_text("API_KEY = load_from_vault()\n")
    return ws


def _assert_clean(where: str, data: bytes | str) -> None:
    hits = found_in(data)
    assert not hits, f"{where} holds planted secret(s) {[h[:12] + '...' for h in hits]}"


def _assert_tree_clean(root: Path) -> None:
    leaks = scan_tree(root)
    assert not leaks, f"planted secrets in {sorted(str(p) for p in leaks)}"


# ---- the scanner itself: it must find what it is looking for ----


def test_scanner_finds_a_planted_value_in_a_file_it_is_given() -> None:
    # Outside pytest's temp directory: the end-of-session scan must not see this deliberate leak.
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "clean.txt").write_text("nothing to see")
        (root / "a" / "b").mkdir(parents=True)
        (root / "a" / "b" / "leak.db").write_bytes(b"\x00\x01" + PLANTED_TOKEN.encode() + b"\xff")
        # Across the scanner's 1 MiB read boundary.
        cut = (1 << 20) - 10
        (root / "big.bin").write_bytes(b"x" * cut + PLANTED_KEY.encode() + b"y" * 100)
        leaks = scan_tree(root)
    assert {p.name: v for p, v in leaks.items()} == {"leak.db": [PLANTED_TOKEN], "big.bin": [PLANTED_KEY]}


def test_planted_values_are_in_the_environment() -> None:
    assert os.environ["TIERWISE_PLANTED_API_KEY"] == PLANTED_KEY
    assert os.environ["TIERWISE_PLANTED_TOKEN"] == PLANTED_TOKEN
    assert os.environ.get("CHAOS_KEY")  # the chaos provider's key: planted unless a real one was set


def test_session_fails_when_a_test_writes_a_planted_secret() -> None:
    # tests/scan_probe.py writes the opaque token to a file under its tmp_path and passes; the
    # end-of-session scan must turn that run into a failure naming the file.
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/scan_probe.py", "-q", "-p", "no:cacheprovider",
             f"--basetemp={d}/bt"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 passed" in out.stdout and "planted secret leaked into 1 file(s)" in out.stdout
    assert "leak.log" in out.stdout and PLANTED_TOKEN not in out.stdout


# ---- each writer ----


async def test_plan_metadata_and_every_ledger_column_hold_no_secret(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(secret_script())
    toml = _config(chaos_server, tmp_path)
    async with Session(toml) as s:
        result = await s.orchestrate(GOAL, workspace=_workspace(tmp_path), budget=1.0)
    assert [st["status"] for st in result.steps] == ["ok", "ok"]
    with Ledger(Config.load(toml).ledger.url) as ledger:
        plan = ledger.finished_steps(result.run_id)["__plan__"]
        calls = ledger.calls(result.run_id)
    # The goal is kept for resume, redacted (it used to be stored verbatim, key included).
    assert plan.metadata["goal"] == "Find where [REDACTED] is used and rotate [REDACTED]"
    # The invalid plan's validation error, the tool error and the prompts were all recorded...
    assert any(c.status == "invalid_output" and "[REDACTED]" in (c.error or "") for c in calls)
    assert any("[REDACTED]" in (c.prompt or "") for c in calls)
    # ...and no byte of the database (nor its WAL) holds a planted value.
    _assert_tree_clean(tmp_path)


def test_log_records_of_tierwise_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("tierwise.some.module")
    log.warning("provider said %s", f"bad key {PLANTED_KEY}")
    try:
        raise ValueError(f"token {PLANTED_TOKEN} rejected")
    except ValueError:
        log.exception("call failed")
    logging.getLogger("httpx").info("HTTP Request: GET https://x.test/?key=%s", PLANTED_TOKEN)
    _assert_clean("log records", caplog.text)
    assert "provider said bad key [REDACTED]" in caplog.text and "ValueError: token [REDACTED]" in caplog.text


# ---- everything at once: a run with tracing and debug logging on ----

RUN = """
import asyncio, json, logging, sys
from pathlib import Path
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tierwise.ledger.tracing import configure

out = Path(sys.argv[2])
logging.basicConfig(filename=out / "debug.log", level=logging.DEBUG)
exporter = InMemorySpanExporter()
configure(exporter)  # the exporter tierwise installs: spans reach it through tierwise's redaction
import tierwise

async def main():
    async with tierwise.Session(sys.argv[1]) as s:
        r = await s.orchestrate(sys.argv[3], workspace=sys.argv[4], budget=1.0)
        return [st["status"] for st in r.steps]

statuses = asyncio.run(main())
trace.get_tracer_provider().force_flush()
spans = [json.loads(sp.to_json()) for sp in exporter.get_finished_spans()]
(out / "spans.json").write_text(json.dumps(spans))
print(json.dumps({"statuses": statuses, "spans": len(spans)}))
"""


def test_no_planted_secret_leaves_an_orchestration(tmp_path: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(secret_script())
    toml = _config(chaos_server, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(toml), str(tmp_path), GOAL, str(_workspace(tmp_path))],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["statuses"] == ["ok", "ok"] and summary["spans"] > 5
    spans = json.loads((tmp_path / "spans.json").read_text())
    # Spans saw the validation error; debug logging of tierwise and its HTTP clients was on.
    assert any(sp["status"]["status_code"] == "ERROR" for sp in spans)
    assert "HTTP Request: POST" in (tmp_path / "debug.log").read_text()
    _assert_clean("stdout", proc.stdout)
    _assert_clean("stderr", proc.stderr)
    _assert_tree_clean(tmp_path)


def test_cli_orchestrate_json_with_console_tracing_leaks_nothing(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(secret_script())
    _config(chaos_server, tmp_path, tracing="console")
    ws = _workspace(tmp_path)
    out = tw("orchestrate", GOAL, "--workspace", str(ws), "--budget", "1", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout)  # spans go to stderr: stdout stays one JSON document
    assert data["goal"] == "Find where [REDACTED] is used and rotate [REDACTED]"
    assert '"name": "run orchestrate"' in out.stderr
    _assert_clean("stdout", out.stdout)
    _assert_clean("stderr", out.stderr)
    _assert_tree_clean(tmp_path)


def test_cli_error_quoting_model_output_is_redacted(tmp_path: Path, chaos_server: ChaosServer) -> None:
    # Every tier answers with a label outside the enum: the final error quotes the model's output.
    chaos_server.set_script({"rules": [{"reply": {"json": {"label": f"{PLANTED_KEY} {PLANTED_TOKEN}"}}}]})
    _config(chaos_server, tmp_path, tracing="console")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"label": {"enum": ["bug", "feature"]}}}))
    out = tw("ask", "Label this ticket", "--kind", "classify", "--schema", str(schema), cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    # One error line (the console spans on stderr carry the run's exception too, redacted).
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "is not one of" in errors[0] and "[REDACTED]" in errors[0]
    _assert_clean("stdout", out.stdout)
    _assert_clean("stderr", out.stderr)
    _assert_tree_clean(tmp_path)


def test_planted_values_cover_both_redaction_rules() -> None:
    # One value is caught by its format, the other only by the name of its variable: both must hold.
    from tierwise.ledger import redact

    assert redact(PLANTED_KEY) == "[REDACTED]" and redact(PLANTED_TOKEN) == "[REDACTED]"
    assert len(PLANTED) == 2 and secrets_scan.PLANTED_ENV["TIERWISE_PLANTED_TOKEN"] == PLANTED_TOKEN
