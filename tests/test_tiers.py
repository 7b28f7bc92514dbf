import pytest

from tierwise.core import Stakes, TaskKind, Tier, default_tier, parse_kind, parse_tier
from tierwise.errors import InputError


@pytest.mark.parametrize(
    ("kind", "tier"),
    [
        ("plan", "large"),
        ("ambiguous", "large"),
        ("final_qa", "large"),
        ("code_edit", "mini"),
        ("code_search", "mini"),
        ("debug", "mini"),
        ("frontend", "mini"),
        ("review_file", "mini"),
        ("read_docs", "mini"),
        ("screenshot", "mini"),
        ("tool_op", "mini"),
        ("classify", "nano"),
        ("extract", "nano"),
        ("rank", "nano"),
        ("validate", "nano"),
        ("preprocess", "nano"),
    ],
)
def test_default_tier_of_each_kind(kind: str, tier: str) -> None:
    assert default_tier(TaskKind(kind)) is Tier(tier)


def test_synthesis_is_large_only_at_high_stakes() -> None:
    assert default_tier(TaskKind.SYNTHESIS, Stakes.HIGH) is Tier.LARGE
    assert default_tier(TaskKind.SYNTHESIS, Stakes.NORMAL) is Tier.MINI
    assert default_tier(TaskKind.SYNTHESIS, Stakes.LOW) is Tier.MINI


def test_escalation_path() -> None:
    assert Tier.NANO.up() is Tier.MINI and Tier.MINI.up() is Tier.LARGE and Tier.LARGE.up() is None


def test_parse_errors_name_the_allowed_values() -> None:
    with pytest.raises(InputError, match="large, mini, nano"):
        parse_tier("huge")
    with pytest.raises(InputError, match="classify"):
        parse_kind("guess")
    assert parse_tier(" NANO ") is Tier.NANO
