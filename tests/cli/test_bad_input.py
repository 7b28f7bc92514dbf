"""Bad input from the probe of issue 13, each case as a user meets it: a real `tierwise` subprocess, which
must answer with one `error:` line and exit 2 — no traceback, no hang, nothing accepted that should not be.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tests.conftest import tw as run_cli
from tierwise.config import Config
from tierwise.errors import ConfigError, InputError
from tierwise.runtime.budget import Caps
from tierwise.runtime.validation import OutputInvalid, check_schema, load_schema, validate
from tierwise.testing import ChaosServer, ChaosServerError, load_script

DEEP = 5000  # far past Python's recursion limit


def tw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A short timeout: "never a hang" is part of what is tested (a chaos server that starts would serve).
    return run_cli(*args, cwd=cwd, timeout=60)


def one_line_error(out: subprocess.CompletedProcess[str], *expected: str) -> str:
    shown = f"exit {out.returncode}\nstdout: {out.stdout[-800:]}\nstderr: {out.stderr[-2000:]}"
    assert out.returncode == 2, shown
    assert "Traceback" not in out.stderr + out.stdout, shown
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    for text in expected:
        assert text in lines[0], shown
    return lines[0]


@pytest.fixture()
def workdir(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    (tmp_path / "tierwise.toml").write_text(
        chaos_config(chaos_server.base_url, "sqlite:///.tierwise/ledger.db")
    )
    return tmp_path


@pytest.fixture()
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def nested(key: str, depth: int) -> str:
    return f'{{"{key}": {{"a": ' * depth + "{}" + "}}" * depth


# -- JSON schemas ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [100, DEEP])
def test_deeply_nested_schema_is_one_line(workdir: Path, chaos_server: ChaosServer, depth: int) -> None:
    (workdir / "deep.json").write_text(nested("properties", depth))
    out = tw("ask", "hi", "--tier", "mini", "--schema", "deep.json", cwd=workdir)
    one_line_error(out, "deep.json", "nests deeper than 64 levels")
    assert chaos_server.requests() == []  # refused before any call


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"$ref": "#"}, "$ref loop"),
        ({"$ref": "http://127.0.0.1:1/remote.json"}, "cannot be resolved"),
        ({"type": "objekt"}, "not a valid JSON Schema"),
    ],
)
def test_schemas_that_cannot_work_are_refused_before_a_call(
    workdir: Path, chaos_server: ChaosServer, schema: dict[str, object], expected: str
) -> None:
    (workdir / "s.json").write_text(json.dumps(schema))
    one_line_error(tw("ask", "hi", "--tier", "mini", "--schema", "s.json", cwd=workdir), expected)
    assert chaos_server.requests() == []


def test_schema_checks_in_process(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(nested("items", DEEP))  # json.loads itself would hit the recursion limit
    with pytest.raises(InputError, match="nests deeper"):
        load_schema(path)
    with pytest.raises(InputError, match="nests deeper"):
        check_schema(json.loads(nested("properties", 80)))
    assert check_schema({"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {}}})
    # A model's output nested past the recursion limit is invalid output (repairable), not a crash.
    with pytest.raises(OutputInvalid, match="nests too deeply"):
        validate("[" * DEEP + "]" * DEEP, schema={"type": "array"})


# -- tierwise.toml ---------------------------------------------------------------------------------------


def test_binary_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "tierwise.toml").write_bytes(os.urandom(64) + b"\xff\xfe\x00")
    one_line_error(tw("models", cwd=tmp_path), "tierwise.toml", "not UTF-8")
    with pytest.raises(ConfigError, match="not UTF-8"):
        Config.load(tmp_path / "tierwise.toml")


def test_deeply_nested_toml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "tierwise.toml").write_text("a = " + "[" * DEEP + "]" * DEEP + "\n")
    one_line_error(tw("models", cwd=tmp_path), "not valid TOML")


@pytest.mark.parametrize(
    "toml",
    [
        "[budget]\nper_run_usd = nan\n",
        "[budget]\nper_run_usd = inf\n",
        "[budget]\nper_process_usd = nan\n",
        "[retry]\nmax_delay_s = inf\n",  # an infinite backoff is a hang
    ],
)
def test_nan_and_inf_in_config_are_refused(tmp_path: Path, toml: str) -> None:
    path = tmp_path / "tierwise.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match="finite number"):
        Config.load(path)


# -- budgets ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_inf_budgets_are_refused(workdir: Path, chaos_server: ChaosServer, value: str) -> None:
    one_line_error(tw("ask", "hi", "--tier", "mini", "--budget", value, cwd=workdir), "--budget")
    one_line_error(tw("orchestrate", "do it", "--budget", value, cwd=workdir), "--budget")
    assert chaos_server.requests() == []


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_caps_refuse_nan_and_inf(value: float) -> None:
    with pytest.raises(InputError, match="finite"):
        Caps(usd=value)
    assert Caps(tokens=10**30).tokens == 10**30  # a huge int cap is still a cap (and no OverflowError)


# -- runs --limit ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["99999999999999999999", "9223372036854775808", "100001", "0"])
def test_runs_limit_is_bounded(workdir: Path, limit: str) -> None:
    one_line_error(tw("runs", "--limit", limit, cwd=workdir), "--limit must be between 1 and 100,000")


def test_runs_limit_in_range_works(workdir: Path) -> None:
    out = tw("runs", "--limit", "100000", "--json", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


# -- chaos-server ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--latency", "-1"], "latency must be between 0 and 3600"),
        (["--latency", "nan"], "latency must be between 0 and 3600"),
        (["--latency", "inf"], "latency must be between 0 and 3600"),
        (["--port", "99999"], "port 99999 is not a TCP port"),
        (["--port", "-1"], "port -1 is not a TCP port"),
    ],
)
def test_chaos_server_bad_options(tmp_path: Path, args: list[str], expected: str) -> None:
    one_line_error(tw("chaos-server", *args, cwd=tmp_path), expected)


def test_chaos_server_port_in_use(tmp_path: Path, busy_port: int) -> None:
    one_line_error(
        tw("chaos-server", "--port", str(busy_port), cwd=tmp_path), "is in use", "pick another port"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe binary", "is not valid JSON"),
        (b'{"rules": [{"reply": "ok"}, {"fault": "explode"}]}', "rules[1].fault.kind"),
        (b'{"faults": [{"fault": "drop"}]}', "faults[0]: a schedule needs exactly one of"),
        (b'{"rule": []}', "rule: Extra inputs are not permitted"),
        (b"[1, 2]", "(top level)"),
    ],
)
def test_chaos_server_bad_script_names_the_entry(
    tmp_path: Path, busy_port: int, content: bytes, expected: str
) -> None:
    (tmp_path / "script.json").write_bytes(content)
    # The port is taken too: were the script accepted, the command would fail on the port, not hang.
    out = tw("chaos-server", "--script", "script.json", "--port", str(busy_port), cwd=tmp_path)
    one_line_error(out, "script.json", expected)
    with pytest.raises(ChaosServerError, match=r"script\.json"):
        load_script(tmp_path / "script.json")


def test_python_m_chaos_server_bad_script_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "script.json").write_text('{"rules": [{"fault": "explode"}]}')
    out = subprocess.run(
        [sys.executable, "-m", "tierwise.testing", "--port", "0", "--script", "script.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    one_line_error(out, "rules[0].fault.kind")
    bad_stdin = subprocess.run(
        [sys.executable, "-m", "tierwise.testing", "--port", "0", "--script", "-"],
        input="{nope",
        capture_output=True,
        text=True,
        timeout=60,
    )
    one_line_error(bad_stdin, "chaos script on stdin is not valid JSON")


# -- what the property tests found (tests/test_properties.py) ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["runs", "--limit", "abc"], "Invalid value for '--limit'"),
        (["run", "pr-review"], "Missing option '--repo'"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line(workdir: Path, args: list[str], expected: str) -> None:
    one_line_error(tw(*args, cwd=workdir), expected, "--help")


def test_argument_that_is_not_utf8_is_one_line(workdir: Path) -> None:
    # An argv byte that is not UTF-8 arrives as a lone surrogate: the ledger could never store it.
    out = subprocess.run(
        [sys.executable, "-m", "tierwise", "runs", "show", b"\xff\xfe".decode("utf-8", "surrogateescape")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "TIERWISE_CONFIG"},
    )
    one_line_error(out, "not valid UTF-8")


def test_path_too_long_is_one_line(workdir: Path) -> None:
    one_line_error(tw("run", "coding-assistant", "hi", "--repo", "a" * 300, cwd=workdir), "too long")


def test_brackets_in_labels_and_answers_are_text_not_markup(workdir: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"rules": [{"reply": "closing [/] and [link=http://x]tag"}]})
    out = tw("ask", "[/] what is [bold]this", "--tier", "mini", "--kind", "classify", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert "closing [/] and [link=http://x]tag" in out.stdout
    runs = tw("runs", cwd=workdir)
    assert runs.returncode == 0 and "Traceback" not in runs.stderr, runs.stderr
    assert "[/]" in runs.stdout and "[bold]this" in runs.stdout  # the label, wrapped by the table


def test_orchestrate_error_after_progress_is_on_its_own_line(
    workdir: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script({"rules": [{"fault": "http_500"}]})
    out = tw("orchestrate", "list the files", cwd=workdir)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    last = [line for line in out.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: "), out.stderr
