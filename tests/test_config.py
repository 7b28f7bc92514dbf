from pathlib import Path

import pytest

from tierwise.config import Config
from tierwise.errors import ConfigError

README_SHAPE = """
[ledger]
url = "sqlite:///.tierwise/ledger.db"      # or postgresql://...
[providers.myserver]
kind = "openai"                            # any OpenAI-compatible server
base_url = "http://127.0.0.1:8011/v1"
api_key_env = "MYSERVER_KEY"
[[models]]
id = "myserver/small"
provider = "myserver"
name = "small-model"
tier = "nano"
input_per_mtok = 0.20
cached_input_per_mtok = 0.02
output_per_mtok = 1.25
context_window = 128000
[tiers]
large = "openai/gpt-5.4"
mini = "openai/gpt-5.4-mini"
nano = "myserver/small"
[budget]
per_run_usd = 1.00
"""


def test_the_documented_shape_loads_exactly(tmp_path: Path) -> None:
    path = tmp_path / "tierwise.toml"
    path.write_text(README_SHAPE)
    cfg = Config.load(path)
    assert cfg.tiers["nano"] == "myserver/small"
    assert cfg.tiers["large"] == "openai/gpt-5.4"
    assert cfg.providers["myserver"].base_url == "http://127.0.0.1:8011/v1"
    assert cfg.budget.per_run_usd == 1.00
    assert cfg.catalog.get("myserver/small").context_window == 128000


def test_found_in_working_directory_and_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tierwise.toml").write_text("[budget]\nper_run_usd = 0.5\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIERWISE_CONFIG", raising=False)
    assert Config.load().budget.per_run_usd == 0.5
    other = tmp_path / "other.toml"
    other.write_text("[budget]\nper_run_usd = 0.25\n")
    monkeypatch.setenv("TIERWISE_CONFIG", str(other))
    assert Config.load().budget.per_run_usd == 0.25


def test_defaults_without_file_depend_on_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIERWISE_CONFIG", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = Config.load()
    assert cfg.offline and cfg.tiers["large"].startswith("local/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = Config.load()
    assert [cfg.tiers[t] for t in ("large", "mini", "nano")] == [
        "openai/gpt-5.4",
        "openai/gpt-5.4-mini",
        "openai/gpt-5.4-nano",
    ]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[ledger]\nurll = 'x'\n", r"ledger\.urll.*allowed: url, store_prompts"),
        ("[providers.x]\nkind = 'grpc'\n", r"providers\.x\.kind.*'anthropic', 'local' or 'litellm'"),
        ("[budget]\nper_run_usd = -1\n", r"budget\.per_run_usd.*greater than 0"),
        ("[tiers]\nnano = 'nope/model'\n", r"tiers\.nano = 'nope/model' is not a known model"),
        (
            "[[models]]\nid = 'a/b'\nprovider = 'a'\nname = 'b'\ntier = 'nano'\nprice = 1\n",
            r"models\[0\]\.price",
        ),
        ("[[models]]\nid = 'ghost/b'\nprovider = 'ghost'\nname = 'b'\ntier = 'nano'\n", r"provider 'ghost'"),
        ("not toml = = \n", r"not valid TOML"),
    ],
)
def test_errors_name_file_key_and_what_is_allowed(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "tierwise.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=expected) as info:
        Config.load(path)
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "absent.toml")
