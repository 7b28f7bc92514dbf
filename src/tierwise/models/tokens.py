"""Offline token counting from vocabularies compiled into the toktok-rs package (no download), and a bound
that needs no tokenizer at all.

Every token of a byte-level BPE vocabulary (o200k, cl100k, Llama 3, Claude's) stands for at least one
byte of the text, so a text's UTF-8 length bounds its token count from above: a budget can reserve on it
without loading a vocabulary (~0.5 s, holding the GIL) or counting (~50 µs a call).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import toktok

from tierwise.core import Message

_ENCODING = "o200k_base"  # GPT-5.x family; a close enough estimate for other providers' budgets
_PER_MESSAGE = 4  # role and separators, as in OpenAI's cookbook accounting
_PER_IMAGE = 800  # a typical detail:auto image
# threads=1: counting a prompt takes microseconds; toktok's default spins up a thread per core per call.


@functools.cache
def _tokenizer() -> Any:
    # The loaded tokenizer, kept: batch_count looks it up by name on every call, which shows in profiles
    # of the hot path (one count per model call). Falls back to the public API if the helper goes away.
    getter = getattr(toktok, "_encoding", None)
    return getter(_ENCODING) if getter is not None else None


def _count(texts: list[str]) -> list[int]:
    tok = _tokenizer()
    if tok is not None:
        return list(tok.count_batch(texts, 1, False))
    return list(toktok.batch_count(texts, _ENCODING, threads=1))


def count_text(text: str) -> int:
    return _count([text])[0]


def count_texts(texts: Sequence[str]) -> list[int]:
    return _count(list(texts))


def count_messages(messages: Sequence[Message]) -> int:
    """Input tokens of a chat request: contents plus a small per-message overhead."""
    if not messages:
        return 0
    return _framed(messages, sum(_count([m.content for m in messages])))


def bound_texts(texts: Sequence[str]) -> int:
    """At least the token count of ``texts`` under a byte-level BPE vocabulary: their UTF-8 length."""
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)


def bound_messages(messages: Sequence[Message]) -> int:
    """``count_messages`` with each content's token count replaced by its bound."""
    if not messages:
        return 0
    return _framed(messages, bound_texts([m.content for m in messages]))


def _framed(messages: Sequence[Message], content_tokens: int) -> int:
    """The contents' tokens plus each message's framing and its images."""
    images = sum(len(m.images) for m in messages) * _PER_IMAGE
    return content_tokens + _PER_MESSAGE * len(messages) + 3 + images
