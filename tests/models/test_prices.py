"""Prices for models the catalog lacks, from genai-prices' bundled data: marked with their source, the
user's [[models]] win, an unknown price stays None (and a budget refuses it), and nothing is fetched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import genai_prices
import pytest
from genai_prices import data_snapshot

from tests.conftest import chaos_config
from tierwise import BudgetExceeded, ConfigError, Session
from tierwise.config import Config
from tierwise.core import Tier, Usage
from tierwise.models import prices
from tierwise.testing import ChaosServer

_OPENAI = {"large": "openai/gpt-5.4", "mini": "openai/gpt-5.4-mini", "nano": "openai/gpt-5.4-nano"}


def _config(extra: dict | None = None, **tiers: str) -> Config:
    return Config.from_dict({"tiers": {**_OPENAI, **tiers}, **(extra or {})})


def _their_price(model_ref: str, provider_id: str, usage: genai_prices.Usage) -> float:
    """genai-prices' own answer for ``usage``, through its public API."""
    return float(genai_prices.calc_price(usage, model_ref, provider_id=provider_id).total_price)


def test_a_model_the_catalog_lacks_is_priced_by_genai_prices_and_marked() -> None:
    config = _config(large="openai/gpt-4o")
    spec = config.catalog.get("openai/gpt-4o")
    assert config.tiers[Tier.LARGE] == "openai/gpt-4o"
    assert (spec.price_source, spec.tier, spec.provider, spec.name) == (
        "genai-prices",
        Tier.LARGE,
        "openai",
        "gpt-4o",
    )
    usage = Usage(input_tokens=12_000, cached_input_tokens=2_000, output_tokens=700)
    theirs = _their_price(
        "gpt-4o",
        "openai",
        genai_prices.Usage(input_tokens=12_000, cache_read_tokens=2_000, output_tokens=700),
    )
    assert spec.cost(usage) == pytest.approx(theirs)
    assert spec in config.catalog.in_tier(Tier.LARGE)  # mapped in [tiers]: a member of the catalog


def test_the_shipped_catalog_and_the_users_models_keep_their_own_prices() -> None:
    user = {"id": "openai/gpt-4o", "provider": "openai", "name": "gpt-4o", "tier": "large",
            "input_per_mtok": 1.0, "output_per_mtok": 2.0}  # fmt: skip
    config = _config({"models": [user]}, large="openai/gpt-4o")
    spec = config.catalog.get("openai/gpt-4o")
    assert (spec.price_source, spec.input_per_mtok, spec.output_per_mtok) == ("user", 1.0, 2.0)
    builtin = config.catalog.get("openai/gpt-5.4-mini")
    assert builtin.price_source == "catalog" and builtin.input_per_mtok == 0.75
    unpriced = {"id": "openai/my-finetune", "provider": "openai", "name": "my-finetune", "tier": "mini"}
    config = _config({"models": [unpriced]}, mini="openai/my-finetune")
    assert config.catalog.get("openai/my-finetune").price_source is None


def test_litellm_model_strings_are_priced_through_their_prefix() -> None:
    bedrock = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"
    config = _config(
        {"providers": {"bedrock": {"kind": "litellm"}, "ll": {"kind": "litellm"}}},
        large=bedrock,
        mini="ll/gemini/gemini-2.5-flash",
    )
    spec = config.catalog.get(bedrock)
    assert (spec.provider, spec.name, spec.price_source) == (
        "bedrock",
        bedrock.split("/", 1)[1],
        "genai-prices",
    )
    theirs = _their_price(
        bedrock.split("/", 1)[1], "aws", genai_prices.Usage(input_tokens=1000, output_tokens=100)
    )
    assert spec.cost(Usage(input_tokens=1000, output_tokens=100)) == pytest.approx(theirs)
    gemini = config.catalog.get("ll/gemini/gemini-2.5-flash")
    assert (gemini.tier, gemini.price_source) == (Tier.MINI, "genai-prices")
    assert gemini.input_per_mtok == prices.lookup("google/gemini-2.5-flash").input_per_mtok  # type: ignore[union-attr]


def test_a_fallback_the_catalog_lacks_serves_the_tier_it_stands_in_for() -> None:
    config = _config(
        {"routing": {"fallbacks": {"openai/gpt-5.4-nano": ["anthropic/claude-3-5-haiku-20241022"]}}}
    )
    spec = config.catalog.get("anthropic/claude-3-5-haiku-20241022")
    assert (spec.tier, spec.price_source) == (Tier.NANO, "genai-prices")
    assert spec not in config.catalog.in_tier(Tier.NANO)  # not a sibling every nano model falls back to


def test_an_unknown_model_has_no_price_never_zero() -> None:
    config = _config({"providers": {"ll": {"kind": "litellm"}}}, large="ll/ollama/my-local-model")
    spec = config.catalog.get("ll/ollama/my-local-model")
    assert (spec.input_per_mtok, spec.output_per_mtok, spec.price_source) == (None, None, None)
    assert spec.cost(Usage(input_tokens=10, output_tokens=10)) is None
    # Outside LiteLLM an unknown name is still a typo until [[models]] says otherwise.
    with pytest.raises(ConfigError, match=r"tiers\.large = 'openai/gpt-nonexistent' is not a known model"):
        _config(large="openai/gpt-nonexistent")
    with pytest.raises(ConfigError, match=r"routing\.fallbacks names 'openai/nope'"):
        _config({"routing": {"fallbacks": {"openai/gpt-5.4-nano": ["openai/nope"]}}})


async def test_a_budgeted_call_on_an_unpriced_model_is_refused_before_it_is_sent(
    tmp_path: Path, chaos_server: ChaosServer
) -> None:
    extra = (
        f'\n[providers.ll]\nkind = "litellm"\nbase_url = "{chaos_server.base_url}"\n'
        'api_key_env = "CHAOS_KEY"\n'
    )
    toml = tmp_path / "tierwise.toml"
    text = chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db", extra)
    toml.write_text(text.replace('large = "chaos/large"', 'large = "ll/openai/no-such-priced-model"'))
    async with Session(toml, budget_usd=1.0) as s:
        with pytest.raises(BudgetExceeded, match="the model has no known price, so the run budget"):
            await s.call("Plan the migration", tier="large")
    assert chaos_server.requests("/v1/chat/completions") == []


def test_only_the_bundled_data_is_read_even_when_an_updater_swapped_the_snapshot() -> None:
    # What genai_prices.UpdatePrices (started by another library) would install after a fetch.
    fetched = data_snapshot.DataSnapshot(providers=[], from_auto_update=True)
    data_snapshot.set_custom_snapshot(fetched)
    try:
        price = prices.lookup("openai/gpt-4o")
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert price is not None and price.provider_id == "openai"
    from genai_prices.data import providers as bundled

    assert prices._bundled().providers is bundled and prices._bundled().from_auto_update is False


def test_tiered_prices_take_the_base_tier() -> None:
    # Gemini 1.5 Pro costs more past 128k input tokens; a call below that pays the base price.
    spec = prices.spec_for("google/gemini-1.5-pro", Tier.LARGE)
    assert spec is not None and spec.price_source == "genai-prices"
    usage = genai_prices.Usage(input_tokens=10_000, output_tokens=1_000)
    assert spec.cost(Usage(input_tokens=10_000, output_tokens=1_000)) == pytest.approx(
        _their_price("gemini-1.5-pro", "google", usage)
    )
    assert prices.spec_for("google/no-such-model", Tier.LARGE) is None
    assert prices.spec_for("google/no-such-model", Tier.LARGE, priced_only=False).price_source is None  # type: ignore[union-attr]


_PROBE = """
import json, sys
NET = ("socket.connect", "socket.getaddrinfo", "urllib.Request")
seen = []
sys.addaudithook(lambda ev, args: seen.append([ev, repr(args)[:200]]) if ev in NET else None)
from tierwise.config import Config
cli_ok = "genai_prices" not in sys.modules
Config.from_dict({})
default_ok = "genai_prices" not in sys.modules
bedrock = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"
c = Config.from_dict({"tiers": {"large": "openai/gpt-4o"}, "providers": {"bedrock": {"kind": "litellm"}},
                      "routing": {"fallbacks": {"openai/gpt-4o": [bedrock]}}})
print(json.dumps({"lazy": cli_ok and default_ok, "loaded": "genai_prices" in sys.modules,
                  "source": c.catalog.get("openai/gpt-4o").price_source, "net": seen}))
"""


def test_no_network_and_no_import_until_a_model_needs_a_price() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HTTPS_PROXY": "http://10.255.255.1:9",
        "HTTP_PROXY": "http://10.255.255.1:9",
    }
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["lazy"] is True  # the default config never imports genai-prices (the CLI starts fast)
    assert (probe["loaded"], probe["source"]) == (True, "genai-prices")
    assert probe["net"] == []  # not one socket, DNS lookup or URL request
