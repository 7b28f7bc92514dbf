import pytest

from tierwise.core import Tier, Usage
from tierwise.errors import InputError
from tierwise.models import Catalog, ModelSpec, load_builtin


def test_builtin_prices_match_the_published_ones() -> None:
    cat = Catalog(load_builtin())
    large, mini, nano = cat.get("openai/gpt-5.4"), cat.get("gpt-5.4-mini"), cat.get("gpt-5.4-nano")
    assert (large.input_per_mtok, large.cached_input_per_mtok, large.output_per_mtok) == (2.50, 0.25, 15.00)
    assert large.context_window == 1_050_000
    assert (mini.input_per_mtok, mini.cached_input_per_mtok, mini.output_per_mtok) == (0.75, 0.075, 4.50)
    assert mini.context_window == 400_000
    assert (nano.input_per_mtok, nano.cached_input_per_mtok, nano.output_per_mtok) == (0.20, 0.02, 1.25)


def test_local_models_carry_notional_prices_of_their_tier() -> None:
    cat = Catalog(load_builtin())
    for tier, ref in (
        (Tier.LARGE, "openai/gpt-5.4"),
        (Tier.MINI, "openai/gpt-5.4-mini"),
        (Tier.NANO, "openai/gpt-5.4-nano"),
    ):
        local = next(m for m in cat.in_tier(tier) if m.provider == "local" and m.name.startswith("smollm2"))
        assert local.notional
        assert local.input_per_mtok == cat.get(ref).input_per_mtok
        assert local.output_per_mtok == cat.get(ref).output_per_mtok


def test_cost_counts_cached_tokens_at_the_cached_price() -> None:
    spec = Catalog(load_builtin()).get("openai/gpt-5.4")
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000)
    assert spec.cost(usage) == pytest.approx(0.6 * 2.50 + 0.4 * 0.25 + 0.1 * 15.00)


def test_unknown_price_is_none_never_zero() -> None:
    spec = ModelSpec(id="x/y", provider="x", name="y", tier=Tier.NANO)
    assert spec.cost(Usage(input_tokens=10, output_tokens=10)) is None
    assert spec.worst_case_cost(10) is None


def test_bare_names_resolve_only_when_unambiguous() -> None:
    cat = Catalog(
        [*load_builtin(), ModelSpec(id="other/gpt-5.4", provider="other", name="gpt-5.4", tier=Tier.LARGE)]
    )
    with pytest.raises(InputError, match="ambiguous"):
        cat.get("gpt-5.4")
    assert cat.get("gpt-5.4-mini").id == "openai/gpt-5.4-mini"
    with pytest.raises(InputError, match="tierwise models"):
        cat.get("nope")


def test_model_id_must_name_its_provider() -> None:
    with pytest.raises(ValueError, match="provider/name"):
        ModelSpec(id="bare", provider="x", name="bare", tier=Tier.NANO)
