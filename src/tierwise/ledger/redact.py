"""Remove secrets from text before the ledger stores it.

Runs on every call record (on the ledger's writer thread), so it is built for speed: every pattern
starts with a literal (which lets ``re`` skip ahead with a fast substring search), word-boundary checks
come as look-behinds *after* that literal, case-insensitive keywords are searched in a lowered copy of
the text, and environment-variable values are replaced with plain ``str.replace``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"
# The shortest text any rule below can change ("pwd=abc", "x://a:b@"); shorter text is returned at once.
_MIN_REDACTABLE = 7

# Environment variables whose values are secrets by naming convention (OPENAI_API_KEY, GH_TOKEN, ...).
_SECRET_ENV_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
_MIN_ENV_SECRET_LEN = 8  # shorter values ("1", "true") would shred ordinary text

# Case-sensitive token formats, replaced whole; the trigger is a substring every match contains, a
# pre-check far cheaper than running the pattern over text that cannot match.
_TOKEN_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    # PEM private keys, also when the text was cut off before the END line.
    (
        "-----BEGIN",
        re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)"),
    ),
    # OpenAI (sk-, sk-proj-, sk-svcacct-, sk-admin-) and Anthropic (sk-ant-) keys.
    ("sk-", re.compile(r"sk-(?<![A-Za-z0-9]sk-)(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}")),
    # AWS access key ids: long-term AKIA..., temporary ASIA...
    ("IA", re.compile(r"A(?<![A-Z0-9]A)(?:KIA|SIA)[0-9A-Z]{16}(?![A-Z0-9])")),
    # GitHub personal, OAuth, user-to-server, server-to-server and refresh tokens; fine-grained PATs.
    ("gh", re.compile(r"gh(?<![A-Za-z0-9]gh)[pousr]_[A-Za-z0-9]{20,}")),
    ("github_pat_", re.compile(r"github_pat_(?<![A-Za-z0-9]github_pat_)[A-Za-z0-9_]{20,}")),
    # Slack bot, user, app, config and refresh tokens.
    ("xox", re.compile(r"xox(?<![A-Za-z0-9]xox)[abposr]-[A-Za-z0-9\-]{10,}")),
    # tierwise proxy keys (`tierwise keys create`): tw- and 43 URL-safe characters.
    ("tw-", re.compile(r"tw-(?<![A-Za-z0-9]tw-)[A-Za-z0-9_\-]{40,}")),
]

# Secrets that follow a marker; only the group "v" is replaced so the reader sees what was there
# ("api_key=[REDACTED]"). These run on the lowered text; ``trigger`` is a cheap substring pre-check.
_ASSIGN_VALUE = r"[\"']?\s*[:=]\s*[\"']?(?P<v>(?!\[redacted\])[^\s\"',;&<>)}\]]{3,})"
_KEY_NAMES = ("api", "access", "secret", "private", "auth")


def _key_lookbehind() -> str:
    # A name must END with e.g. "api_key": ``sort_key=name`` and ``monkey: x`` are left alone.
    names = [f"{n}{sep}key" for n in _KEY_NAMES for sep in ("_", "-", "")]
    return "|".join(f"(?<={name})" for name in names)


_MARKED_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    # Authorization headers of any scheme: keep "Authorization: Bearer", drop the credential.
    (
        "authorization",
        re.compile(
            r"authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?+"
            r"(?P<v>[a-z0-9._~+/=\-]{6,})"
        ),
    ),
    # A bare "Bearer <token>"; the token must look like one (16+ chars with a digit), not prose.
    (
        "bearer",
        re.compile(r"bearer(?<![a-z0-9_]bearer)\s+(?=[a-z0-9._~+/=\-]*[0-9])(?P<v>[a-z0-9._~+/=\-]{16,})"),
    ),
    # Passwords in URLs: scheme://user:password@host. The trigger is "@", not "://": URLs without
    # credentials are common in model output and would each cost a failed match.
    ("@", re.compile(r"://[^\s:/@]+:(?P<v>[^\s@/]+)@")),
    # Assignments; the name must end with the keyword, so ``max_tokens: 100`` is left alone.
    ("key", re.compile(rf"key(?:{_key_lookbehind()})(?![a-z0-9]){_ASSIGN_VALUE}")),
    ("secret", re.compile(rf"secret(?![a-z0-9]){_ASSIGN_VALUE}")),
    ("passw", re.compile(rf"passw(?:or)?d(?![a-z0-9]){_ASSIGN_VALUE}")),
    ("pwd", re.compile(rf"pwd(?![a-z0-9]){_ASSIGN_VALUE}")),
    ("token", re.compile(rf"token(?![a-z0-9]){_ASSIGN_VALUE}")),
]

_env_cache: tuple[dict[object, object], list[str]] | None = None


def _env_secrets() -> list[str]:
    """Secret values in the environment right now, longest first so overlapping values go whole."""
    global _env_cache
    # os.environ decodes every entry on iteration (tens of microseconds); comparing its raw dict
    # with a copy is a C-level operation, so the list is rebuilt only when the environment changed.
    raw: Mapping[object, object] | None = getattr(os.environ, "_data", None)
    if raw is not None and _env_cache is not None and _env_cache[0] == raw:
        return _env_cache[1]
    values = {
        value
        for name, value in os.environ.items()
        if len(value) >= _MIN_ENV_SECRET_LEN and name.upper().endswith(_SECRET_ENV_SUFFIXES)
    }
    secrets = sorted(values, key=len, reverse=True)
    if raw is not None:
        _env_cache = (dict(raw), secrets)
    return secrets


def _redact_marked(text: str) -> str:
    lowered = text.lower()
    if len(lowered) != len(text):
        # A few non-ASCII letters lower to two characters; fall back to an ASCII-only lowering so
        # match positions still line up with the original text.
        lowered = "".join(c.lower() if c.isascii() else c for c in text)
    spans: list[tuple[int, int]] = []
    for trigger, pattern in _MARKED_PATTERNS:
        if trigger in lowered:
            spans.extend(m.span("v") for m in pattern.finditer(lowered))
    if not spans:
        return text
    spans.sort()
    parts: list[str] = []
    pos = 0
    for start, end in spans:
        if start < pos:  # overlaps a span already redacted (e.g. "Authorization: Bearer" twice)
            if end > pos:
                pos = end
            continue
        parts.append(text[pos:start])
        parts.append(REDACTED)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def redact(text: str) -> str:
    """Return ``text`` with API keys, tokens, passwords and private keys replaced by ``[REDACTED]``.

    Also replaces the value of every environment variable named ``*_KEY``, ``*_TOKEN``, ``*_SECRET``
    or ``*_PASSWORD`` (8+ characters), whatever it looks like.
    """
    if len(text) < _MIN_REDACTABLE:
        return text
    for value in _env_secrets():
        if value in text:
            text = text.replace(value, REDACTED)
    for trigger, pattern in _TOKEN_PATTERNS:
        if trigger in text:
            text = pattern.sub(REDACTED, text)
    return _redact_marked(text)


def redact_obj(value: Any) -> Any:
    """``redact`` applied to every string inside nested dicts, lists and tuples (keys included).

    For JSON metadata: other values (numbers, booleans, None) are returned as they are, and a
    container comes back as a new dict or list only when something in it was redacted.
    """
    if isinstance(value, str):
        return redact(value)
    strings: list[str] = []
    _strings(value, strings)
    if not strings:
        return value
    # The common case (nothing to redact) in one pass over all the strings joined by a newline, not
    # a pass per string: a match inside one string is still a match in the joined text (every rule
    # treats a newline as it treats the start or end of the text), so an unchanged join proves that
    # every string is unchanged. A match across two strings only costs the walk below.
    joined = "\n".join(strings)
    if redact(joined) == joined:
        return value
    return _redact_each(value)


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _strings(k, out)
            _strings(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, out)


def _redact_each(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redact_each(k): _redact_each(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_each(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact_each(v) for v in value)
    return value
