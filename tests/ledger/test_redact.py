"""redact(): every secret shape goes, ordinary text stays, and it is fast enough for every call."""

from __future__ import annotations

import time

import pytest

from tierwise.ledger import REDACTED, redact
from tierwise.ledger.redact import redact_obj

SECRETS = {
    "openai": "sk-" + "T3BlbkFJ" * 6,
    "openai project": "sk-proj-" + "Ab3_-x9Z" * 20,
    "openai service account": "sk-svcacct-" + "q1W2e3R4t5" * 5,
    "anthropic": "sk-ant-api03-" + "Zx9_Yw8-" * 12 + "AA",
    "aws access key": "AKIAIOSFODNN7EXAMPLE",
    "aws temporary key": "ASIAY34FZKBOKMUTVV7A",
    "github personal": "ghp_" + "a1B2c3D4e5" * 4,
    "github oauth": "gho_" + "Z9y8X7w6V5" * 4,
    "github fine-grained": "github_pat_11ABCDEFG0" + "abcDEF123_" * 8,
    "slack bot": "xoxb-2150000000-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "slack user": "xoxp-2150000000-1234567890123-9876543210",
    "tierwise proxy key": "tw-" + "Qm_9-zX4" * 6,
}


@pytest.mark.parametrize("name", SECRETS)
def test_token_formats_are_removed(name: str) -> None:
    secret = SECRETS[name]
    out = redact(f"before {secret} after")
    assert out == f"before {REDACTED} after"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", f"Authorization: Bearer {REDACTED}"),
        ("authorization: bearer abcdef123456", f"authorization: bearer {REDACTED}"),
        ("-H 'Authorization: Basic dXNlcjpwYXNz'", f"-H 'Authorization: Basic {REDACTED}'"),
        ('{"Authorization": "Bearer tok_live_123456"}', f'{{"Authorization": "Bearer {REDACTED}"}}'),
        ("send Bearer 9f8e7d6c5b4a39281706 along", f"send Bearer {REDACTED} along"),
        ("api_key=abc123def", f"api_key={REDACTED}"),
        ("OPENAI_API_KEY=some-value-here", f"OPENAI_API_KEY={REDACTED}"),
        ("apiKey: 'Xyz-123-456'", f"apiKey: '{REDACTED}'"),
        ('{"password": "hunter22"}', f'{{"password": "{REDACTED}"}}'),
        ("PASSWORD = correct-horse", f"PASSWORD = {REDACTED}"),
        ("db_passwd=abc;other=1", f"db_passwd={REDACTED};other=1"),
        ("secret: s3cr3t-value", f"secret: {REDACTED}"),
        ("client_secret=xyz789abc&grant=1", f"client_secret={REDACTED}&grant=1"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", f"aws_secret_access_key = {REDACTED}"),
        ("refresh_token: 1//0gAbCdEf", f"refresh_token: {REDACTED}"),
        ("postgresql://app:pa55word@db:5432/prod", f"postgresql://app:{REDACTED}@db:5432/prod"),
    ],
)
def test_marked_secrets_keep_their_marker(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_private_key_blocks() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabc+/=\n-----END RSA PRIVATE KEY-----"
    assert redact(f"key:\n{pem}\nthanks") == f"key:\n{REDACTED}\nthanks"
    openssh = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    )
    assert redact(openssh) == REDACTED
    # An output cut off mid-key loses everything from BEGIN on.
    assert redact("here: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg") == f"here: {REDACTED}"


def test_environment_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "plain-looking-value-1")
    monkeypatch.setenv("DEPLOY_TOKEN", "tok3n-v4lue")
    monkeypatch.setenv("DB_PASSWORD", "correcthorse")
    monkeypatch.setenv("WEBHOOK_SECRET", "whsec-98765")
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # under 8 characters: ordinary words would be shredded
    monkeypatch.setenv("HOME_DIRECTORY", "not-a-secret-value")  # name does not say secret
    text = "plain-looking-value-1 tok3n-v4lue correcthorse whsec-98765 abc not-a-secret-value"
    assert redact(text) == f"{REDACTED} {REDACTED} {REDACTED} {REDACTED} abc not-a-secret-value"
    # Read at call time: a variable set later is honoured, one removed is forgotten.
    monkeypatch.setenv("LATE_KEY", "appeared-later")
    monkeypatch.delenv("DB_PASSWORD")
    assert redact("appeared-later correcthorse") == f"{REDACTED} correcthorse"


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens: 100, input_tokens=5, token_count=7, tokenizer=bpe",
        "sort_key=name, primary_key: id, monkey: banana",
        "a risk-free task-oriented desk-lamp; sklearn and ghost_writer",
        "https://example.com/docs?page=2 and http://localhost:8080/health",
        "bearer bonds are paid to whoever holds them",
        "The password policy requires 12 characters.",
        "AKIA is a prefix; AKIAshort is not a key",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_non_ascii_text_keeps_positions() -> None:
    # "İ" lowers to two characters; the match positions must still line up with the original.
    assert redact("İİ password=Geheim123 İ ok") == f"İİ password={REDACTED} İ ok"


def test_redaction_is_idempotent() -> None:
    text = " ".join([*SECRETS.values(), "api_key=abc123", "Authorization: Bearer abcdef123456"])
    once = redact(text)
    assert redact(once) == once
    assert all(secret not in once for secret in SECRETS.values())


def test_fast_enough_for_every_call() -> None:
    # A 100 KB model output with nothing to redact but plenty of near misses.
    line = "The model used max_tokens=512 on https://example.com/a/b; task-oriented output. "
    text = (line * 1300)[:100_000]
    redact(text)
    start = time.perf_counter()
    for _ in range(10):
        redact(text)
    per_call = (time.perf_counter() - start) / 10
    assert per_call < 0.02, f"redact took {per_call * 1000:.1f} ms on 100 KB"
    start = time.perf_counter()
    for _ in range(1000):
        redact('{"label": "bug", "confidence": 0.9}')
    assert (time.perf_counter() - start) / 1000 < 50e-6


def test_redact_obj_reaches_nested_metadata() -> None:
    key = SECRETS["openai project"]
    meta = {
        "goal": f"rotate {key}",
        "fallback": False,
        "calls": 3,
        "cost": 0.25,
        "none": None,
        "notes": ["plain", f"api_key={key}"],
        "reasons": {"step": "policy", key: "a key as a dict key"},
        "pair": ("x", key),
    }
    out = redact_obj(meta)
    assert out == {
        "goal": f"rotate {REDACTED}",
        "fallback": False,
        "calls": 3,
        "cost": 0.25,
        "none": None,
        "notes": ["plain", f"api_key={REDACTED}"],
        "reasons": {"step": "policy", REDACTED: "a key as a dict key"},
        "pair": ("x", REDACTED),
    }
    assert meta["goal"] == f"rotate {key}"  # the caller's dict is not changed


def test_redact_obj_returns_clean_values_as_they_are() -> None:
    # Nothing to redact: the very same objects come back (no copy per call record).
    meta = {"tiers": {"a": "mini"}, "notes": ["merged a and b"], "n": 1}
    assert redact_obj(meta) is meta
    assert redact_obj(["a", ("b", 1)]) == ["a", ("b", 1)]
    assert redact_obj(3) == 3 and redact_obj(None) is None


def test_redact_obj_is_fast_on_clean_metadata() -> None:
    # Every call and step record's metadata goes through it on the ledger's writer thread.
    meta = {"escalations": 0, "intent_id": "0123456789abcdef0123456789abcdef", "routing": True, "n": 3}
    redact_obj(meta)
    start = time.perf_counter()
    for _ in range(1000):
        redact_obj(meta)
    assert (time.perf_counter() - start) / 1000 < 50e-6
