"""The LiteLLM adapter against the chaos server through LiteLLM's OpenAI-compatible route (``openai/...``
with ``api_base``): our retries (LiteLLM's are off), our budget and ledger, LiteLLM's cost beside ours."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tierwise import BudgetExceeded, ConfigError, Session
from tierwise.config import Config
from tierwise.core import Task, TaskKind, ToolSpec
from tierwise.errors import ProviderSetupError
from tierwise.ledger import Ledger
from tierwise.providers.litellm import COST_KEY
from tierwise.testing import ChaosServer

# Not importorskip: importing LiteLLM here, before the adapter sets its offline switches, would let it
# fetch its cost map from GitHub.
if importlib.util.find_spec("litellm") is None:
    pytest.skip("LiteLLM is not installed (extra litellm)", allow_module_level=True)

# Ours differ from LiteLLM's gpt-4o prices (2.50 / 10.00), so the two costs can be told apart.
LARGE_IN, LARGE_OUT = 3.00, 12.00


def _toml(tmp_path: Path, base_url: str, extra: str = "", provider: str = "") -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(f"""
[ledger]
url = "sqlite:///{tmp_path}/ledger.db"

[providers.ll]
kind = "litellm"
base_url = "{base_url}"
api_key_env = "CHAOS_KEY"
timeout_s = 2.0
{provider}
[[models]]
id = "ll/large"
provider = "ll"
name = "openai/gpt-4o"
tier = "large"
input_per_mtok = {LARGE_IN}
output_per_mtok = {LARGE_OUT}
max_output_tokens = 1000
capabilities = ["tools", "json_schema"]

[[models]]
id = "ll/mini"
provider = "ll"
name = "openai/mini-model"
tier = "mini"
input_per_mtok = 0.75
output_per_mtok = 4.50
max_output_tokens = 500
capabilities = ["tools", "json_schema"]

[[models]]
id = "ll/nano"
provider = "ll"
name = "openai/nano-model"
tier = "nano"
input_per_mtok = 0.20
output_per_mtok = 1.25
max_output_tokens = 200
capabilities = ["json_schema"]

[[models]]
id = "ll/embed"
provider = "ll"
name = "openai/text-embedding-3-small"
tier = "nano"
input_per_mtok = 0.02
output_per_mtok = 0.0
capabilities = ["embeddings"]

[tiers]
large = "ll/large"
mini = "ll/mini"
nano = "ll/nano"

[retry]
max_attempts = 3
base_delay_s = 0.01
max_delay_s = 0.05
{extra}
""")
    return path


def _calls(toml: Path, run_id: str) -> list:
    with Ledger(Config.load(toml).ledger.url) as ledger:
        return ledger.calls(run_id=run_id)


def _sent(server: ChaosServer) -> list[str]:
    return [r["body"]["model"] for r in server.requests("/v1/chat/completions")]


_REPLY = {
    "rules": [{"reply": {"text": "one two three", "usage": {"prompt_tokens": 50, "completion_tokens": 3}}}]
}
OURS = (50 * LARGE_IN + 3 * LARGE_OUT) / 1e6
THEIRS = (50 * 2.50 + 3 * 10.00) / 1e6  # LiteLLM's own price list for gpt-4o


async def test_a_call_goes_through_litellm_with_our_cost_and_litellms_beside_it(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(_REPLY)
    toml = _toml(tmp_path, chaos_server.base_url)
    async with Session(toml) as s, s.run("test", "litellm") as scope:
        result = await s.call("Plan the migration", tier="large", kind="plan", run=scope)
        run_id = scope.id
    assert (result.text, result.model, result.cost_usd) == ("one two three", "ll/large", pytest.approx(OURS))
    assert _sent(chaos_server) == ["gpt-4o"]  # LiteLLM strips its route prefix
    [call] = _calls(toml, run_id)
    assert (call.status, call.provider, call.input_tokens, call.output_tokens) == ("ok", "ll", 50, 3)
    assert call.cost_usd == pytest.approx(OURS)  # ours: what budgets use
    assert call.metadata[COST_KEY] == pytest.approx(THEIRS)  # LiteLLM's, recorded beside it
    headers = chaos_server.requests("/v1/chat/completions")[0]
    assert headers["body"]["max_tokens"] == 1000


async def test_cached_and_reasoning_tokens_reach_the_ledger(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 40, "cached_tokens": 600, "reasoning_tokens": 25}
    chaos_server.set_script({"rules": [{"reply": {"text": "ok", "usage": usage}}]})
    toml = _toml(tmp_path, chaos_server.base_url)
    async with Session(toml) as s, s.run("test", "litellm-cached") as scope:
        result = await s.call("Plan the migration", tier="large", kind="plan", run=scope)
        run_id = scope.id
    [call] = _calls(toml, run_id)
    assert (call.input_tokens, call.cached_input_tokens, call.output_tokens, call.reasoning_tokens) == (
        1000, 600, 40, 25
    )  # fmt: skip
    # ll/large has no cached price: cached tokens are billed at the input price, never at 0.
    assert result.cost_usd == pytest.approx((1000 * LARGE_IN + 40 * LARGE_OUT) / 1e6)


async def test_a_stream_records_the_same_usage_and_cost_as_the_call(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    chaos_server.set_script(_REPLY)
    toml = _toml(tmp_path, chaos_server.base_url)
    async with Session(toml) as s, s.run("test", "litellm-stream") as scope:
        stream = s.stream("Plan the migration", run=scope, tier="large", kind="plan")
        parts = [d async for d in stream]
        run_id = scope.id
    assert "".join(parts) == "one two three" and len(parts) > 1
    assert stream.result is not None and stream.result.cost_usd == pytest.approx(OURS)
    [call] = _calls(toml, run_id)
    assert (call.operation, call.status, call.input_tokens, call.output_tokens) == ("stream", "ok", 50, 3)
    assert call.cost_usd == pytest.approx(OURS) and call.metadata.get("usage_estimated") is False
    assert call.metadata[COST_KEY] == pytest.approx(THEIRS)
    assert chaos_server.requests("/v1/chat/completions")[0]["body"]["stream"] is True


async def test_tool_calls_round_trip(tmp_path: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script(
        {
            "rules": [
                {
                    "match": {"has_tools": True},
                    "reply": {"tool_calls": [{"name": "read", "arguments": {"path": "a.py"}}]},
                }
            ]
        }
    )
    tool = ToolSpec("read", "read a file", {"type": "object", "properties": {"path": {"type": "string"}}})
    task = Task("Open a.py", kind=TaskKind.CODE_EDIT, tools=(tool,))
    async with Session(_toml(tmp_path, chaos_server.base_url)) as s:
        result = await s.call(task)
    [call] = result.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("read", {"path": "a.py"})
    sent = chaos_server.requests("/v1/chat/completions")[0]["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["read"]


async def test_a_5xx_is_retried_by_our_retries_alone(tmp_path: Path, chaos_server: ChaosServer) -> None:
    chaos_server.set_script({"faults": [{"fault": "http_503", "first": 2}], **_REPLY})
    toml = _toml(tmp_path, chaos_server.base_url)
    async with Session(toml) as s, s.run("test", "litellm-503") as scope:
        result = await s.call("Plan the migration", tier="large", kind="plan", run=scope)
        run_id = scope.id
    assert result.text == "one two three"
    # Exactly three requests: two 503s and the answer; LiteLLM's or the OpenAI SDK's retries would add more.
    assert _sent(chaos_server) == ["gpt-4o"] * 3
    assert [(c.status, c.attempt) for c in _calls(toml, run_id)] == [("error", 1), ("error", 2), ("ok", 3)]


async def test_a_budget_too_small_refuses_before_any_request(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    toml = _toml(tmp_path, chaos_server.base_url)
    async with Session(toml, budget_usd=0.0001) as s:
        with pytest.raises(BudgetExceeded):
            await s.call("Plan the migration", tier="large", kind="plan")
    assert _sent(chaos_server) == []


async def test_embeddings_through_litellm(tmp_path: Path, chaos_server: ChaosServer) -> None:
    async with Session(_toml(tmp_path, chaos_server.base_url)) as s:
        out = await s.embed(["alpha", "beta"], model="ll/embed")
    assert len(out.vectors) == 2 and len(out.vectors[0]) > 0 and out.usage.input_tokens > 0
    assert [r["body"]["model"] for r in chaos_server.requests("/v1/embeddings")] == ["text-embedding-3-small"]


# --- bad input ----------------------------------------------------------------------------------------

_KEYLESS = """
[providers.{name}]
kind = "litellm"
"""


def _keyless(tmp_path: Path, name: str, model: str) -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(
        f'[ledger]\nurl = "sqlite:///{tmp_path}/ledger.db"\n'
        + _KEYLESS.format(name=name)
        + f'\n[tiers]\nlarge = "{model}"\nmini = "{model}"\nnano = "{model}"\n'
    )
    return path


async def test_an_anthropic_model_without_its_key_is_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    toml = _keyless(tmp_path, "claude", "claude/anthropic/claude-3-5-haiku-20241022")
    async with Session(toml) as s:
        with pytest.raises(ConfigError) as err:
            await s.call("Plan the migration", tier="large", kind="plan")
    message = str(err.value)
    assert isinstance(err.value, ProviderSetupError) and "\n" not in message
    assert "ANTHROPIC_API_KEY" in message and "[providers.claude]" in message


async def test_a_bedrock_model_without_aws_credentials_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probe off this machine
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    model = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"
    toml = _keyless(tmp_path, "bedrock", model)
    assert Config.load(toml).catalog.get(model).price_source == "genai-prices"
    async with Session(toml) as s:
        with pytest.raises(ConfigError, match=r"needs AWS credentials.*AWS_ACCESS_KEY_ID") as err:
            await s.call("Plan the migration", tier="large", kind="plan")
    assert "\n" not in str(err.value)


async def test_an_unknown_litellm_prefix_is_one_line(tmp_path: Path, chaos_server: ChaosServer) -> None:
    extra = '\n[[models]]\nid = "ll/odd"\nprovider = "ll"\nname = "nosuchprovider/model-x"\ntier = "large"\n'
    toml = _toml(tmp_path, chaos_server.base_url, extra=extra)
    text = toml.read_text().replace('large = "ll/large"', 'large = "ll/odd"')
    toml.write_text(text)
    async with Session(toml) as s:
        with pytest.raises(
            ConfigError, match=r"LiteLLM does not know the provider of 'nosuchprovider/model-x'"
        ):
            await s.call("Plan the migration", tier="large", kind="plan")
    assert _sent(chaos_server) == []


def test_the_cli_prints_one_line_without_a_traceback(tmp_path: Path) -> None:
    from tests.conftest import tw

    toml = _keyless(tmp_path, "claude", "claude/anthropic/claude-3-5-haiku-20241022")
    out = tw(
        "--config", str(toml), "ask", "--tier", "large", "hello", cwd=tmp_path, env={"ANTHROPIC_API_KEY": ""}
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    assert "ANTHROPIC_API_KEY" in out.stderr + out.stdout


# --- no phoning home ------------------------------------------------------------------------------------

_PROBE = """
import asyncio, json, sys
NET = ("socket.connect", "socket.getaddrinfo", "urllib.Request")
seen = []
sys.addaudithook(lambda ev, args: seen.append([ev, repr(args)[:300]]) if ev in NET else None)
from tierwise import Session
from tierwise.testing import ChaosServer
async def main(toml):
    async with Session(toml) as s:
        await s.call("Plan the migration", tier="large", kind="plan")
        return "litellm" in sys.modules
with ChaosServer() as server:
    toml = sys.argv[1]
    open(toml, "w").write(open(toml + ".in").read().replace("BASE_URL", server.base_url))
    loaded = asyncio.run(main(toml))
print(json.dumps({"loaded": loaded, "net": seen}))
"""


def test_litellm_opens_no_socket_but_to_the_configured_server(tmp_path: Path) -> None:
    template = _toml(tmp_path, "BASE_URL")
    (tmp_path / "t.toml.in").write_text(template.read_text())
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "t.toml")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "CHAOS_KEY": "k", "HOME": str(tmp_path),
             "HTTPS_PROXY": "http://10.255.255.1:9"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["loaded"] is True
    remote = [e for e in probe["net"] if "127.0.0.1" not in e[1] and "localhost" not in e[1]]
    assert remote == [], remote
