"""A small, deterministic detector of prompt-injection text in content (files, diffs, pages, tickets).

Content is data and the systems never obey it; this detector exists so that a change *carrying* text aimed
at models is reported (PR review turns a hit into a security finding) whatever a model concludes. It reads
text line by line after undoing the usual disguises (zero-width characters, full-width letters). A line is
flagged when it holds one *strong* signal (an instruction override, a chat-template role marker, tool-call
markup, a request to raise the spend cap or widen permissions, a directive addressed to an AI) or two
*weak* ones of different kinds (a tool-call-shaped JSON object, a path outside any workspace, a navigation
to a URL, an exfiltration verb, a write to git's config, a data-frame closing tag), because each weak
signal alone is common in honest code and documentation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Hit", "scan", "scan_lines", "signals"]

_I = re.IGNORECASE
# Words that make a line a command to a model rather than a label ("assistant: disabled" is config).
_DIRECTIVE = (
    r"(?=.*\b(?:you|your|ignore|read|open|call|write|approve|render|quote|include|send|navigate|print|run|"
    r"must|please|grant|escalate|override|now)\b)"
)
_BIG = r"\$?\s*(?:\d{4,}|\d{1,3}(?:,\d{3})+|unlimited|infinite|inf\b)"

_STRONG: dict[str, re.Pattern[str]] = {
    "instruction-override": re.compile(
        r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|of\s+)*(?:(?:the|your|my)\s+)?"
        r"(?:previous|prior|above|earlier|preceding|original|initial|system|existing|current)\s+"
        r"(?:instructions?|prompts?|rules|directions|guidelines|directives|goals?|tasks?)"
        r"|\b(?:ignore|disregard|forget)\s+(?:all\s+)?your\s+(?:instructions?|rules|guidelines|goal|task|"
        r"system\s+prompt|programming)"
        r"|\bignore\s+(?:all|everything)\s+(?:above|before|previous)"
        r"|\bnew\s+instructions\s*(?:follow|:)"
        r"|\byou\s+are\s+now\s+(?:an?\s+)?(?:unrestricted|unfiltered|jailbroken|dan\b|evil|in\s+\w+\s+mode)"
        r"|\bfrom\s+now\s+on,?\s+you\s+(?:must|will|are)",
        _I,
    ),
    "role-marker": re.compile(
        r"<\|(?:im_start|im_end|system|assistant|user|start_header_id|end_header_id|eot_id|endoftext)\|>"
        r"|\[/?INST\]|<</?SYS>>|<start_of_turn\>"
        # "system:" at the start of a line, followed by words that command a model
        r"|^\W{0,6}(?:system|developer)(?:\s+(?:message|prompt|override|notice))?\s*:" + _DIRECTIVE,
        _I,
    ),
    "tool-call-markup": re.compile(
        r"</?(?:tool_call|tool_calls|function_call|function_calls|tool_use)\b"
        r"|<invoke\s+name=|<\|(?:tool_call|python_tag)\|>",
        _I,
    ),
    "addressed-to-ai": re.compile(
        r"^\W{0,6}(?:(?:ai|llm|automated|autonomous)\s+)?(?:assistants?|agents?|reviewers?|bots?|copilots?|"
        r"ai|llms?|language\s+models?)\s*[:,]\s*"
        + _DIRECTIVE
        + r"|\b(?:note|message|attention|instructions?|hint)\s+(?:to|for)\s+(?:all\s+|any\s+|the\s+)?"
        r"(?:ai|llm|gpt|assistant|agent|bot|model|reviewer|language\s+model)s?\b"
        r"|\b(?:to|dear|hey|hello)\s+(?:any\s+|all\s+|the\s+)?(?:ai|llm|language\s+model)s?\b"
        r"|\bai\s+(?:reviewers?|agents?|assistants?|models?)\s*[:,]",
        _I,
    ),
    "approval-request": re.compile(
        r"\b(?:auto-?)?approve\s+(?:this|the)\s+(?:pr|pull\s+request|change|diff|patch|merge\s+request)\b"
        r"|\breport\s+no\s+(?:findings|issues|problems|vulnerabilities|risks)"
        r"|\bmark\s+(?:this|it|the\s+(?:pr|change))\s+as\s+(?:safe|approved|reviewed)",
        _I,
    ),
    "budget-change": re.compile(
        r"\b(?:raise|increase|lift|remove|disable|bump|double|ignore|extend)\s+(?:your|this\s+run'?s)\s+"
        r"(?:budget|spend(?:ing)?\s+(?:cap|limit)|cost\s+(?:cap|limit))\b"
        r"|\b(?:ignore|bypass|disable)\s+(?:the\s+)?(?:budget|spend(?:ing)?\s+(?:cap|limit)|cost\s+(?:cap|limit))\b"
        r"|\b(?:budget|spend(?:ing)?\s+(?:cap|limit)|cost\s+cap)\s+to\s+" + _BIG,
        _I,
    ),
    "permission-change": re.compile(
        r"\badd\s+\S+\s+to\s+(?:your|the)\s+allow-?list"
        r"|\bgrant(?:ed)?\s+(?:you\s+|yourself\s+)?(?:admin|root|shell|sudo|write|full)\s+"
        r"(?:access|permissions?|rights|tools?)"
        r"|\byou\s+(?:now\s+)?have\s+(?:been\s+granted\s+|access\s+to\s+)?(?:the\s+|a\s+|new\s+)?tools?\b"
        r"|\bnew\s+tools\s+granted\b",
        _I,
    ),
}
_WEAK: dict[str, re.Pattern[str]] = {
    "tool-call-json": re.compile(
        r'"(?:name|tool|function)"\s*:\s*"\w+"\s*,\s*"(?:arguments|parameters|args|input)"\s*:'
        r'|"tool_calls"\s*:\s*\[',
        _I,
    ),
    "outside-path": re.compile(
        r"(?:\.\./){2,}|(?:\.\.\\){2,}|/etc/(?:passwd|shadow|hostname|sudoers)|/root/|~/\.ssh"
        r"|\bid_(?:rsa|ed25519)\b|\.aws/credentials|/proc/self/(?:environ|cwd|root)",
        _I,
    ),
    "navigation": re.compile(
        r"\b(?:navigate|browse|redirect|proceed|go|open|visit)\s+(?:now\s+)?(?:to\s+)?(?:https?:)?//", _I
    ),
    "exfiltration": re.compile(
        r"\b(?:steal|exfiltrat\w*|leak)\b"
        r"|\b(?:send|submit|post|upload|forward|paste|include)\s+(?:it\s+|them\s+)?(?:the\s+|all\s+|your\s+|"
        r"their\s+|the\s+user'?s\s+|this\s+|its\s+)?(?:data|cookies?|tokens?|credentials?|secrets?|"
        r"(?:api\s+)?keys?|passwords?|session|contents?)\b",
        _I,
    ),
    "git-config-write": re.compile(
        r"\b(?:write|append|add|modify|edit|change|set|put)\b[^\n]{0,60}\.git/(?:config|hooks)", _I
    ),
    "git-config-key": re.compile(
        r"\bcore\.(?:fsmonitor|hookspath|sshcommand|pager)\b"
        r"|\b(?:fsmonitor|hookspath|sshcommand)\s*=",
        _I,
    ),
    # Closing the frame a system wraps content in, to make what follows look like instructions.
    "frame-escape": re.compile(r"</(?:tool_output|diff|source|page)\>", _I),
}
# Zero-width and bidi-control characters hide words from a reader but not from a tokenizer.
_INVISIBLE = dict.fromkeys(
    [*range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2065), 0xFEFF, 0x00AD]
)


@dataclass(frozen=True, slots=True)
class Hit:
    """A flagged line (1-based), its signals, its text (trimmed), and whether a signal was strong."""

    line: int
    categories: tuple[str, ...]
    text: str
    strong: bool


def signals(line: str) -> tuple[set[str], set[str]]:
    """The strong and the weak signals in one line of text."""
    text = unicodedata.normalize("NFKC", line.translate(_INVISIBLE))
    strong = {name for name, rx in _STRONG.items() if rx.search(text)}
    weak = {name for name, rx in _WEAK.items() if rx.search(text)}
    return strong, weak


def scan_lines(lines: Iterable[tuple[int, str]]) -> list[Hit]:
    """Flagged lines among numbered lines (``(number, text)``, e.g. the added lines of a diff)."""
    hits: list[Hit] = []
    for n, line in lines:
        strong, weak = signals(line)
        if strong or len(weak) >= 2:
            cats = tuple(sorted(strong)) + tuple(sorted(weak))
            hits.append(Hit(n, cats, line.strip()[:200], bool(strong)))
    return hits


def scan(text: str) -> list[Hit]:
    """Flagged lines of ``text``; line numbers count from 1."""
    return scan_lines(enumerate(text.splitlines(), 1))
