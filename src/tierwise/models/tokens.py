"""Offline token counting from vocabularies compiled into the toktok-rs package (no download)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import toktok

from tierwise.core import Message

_ENCODING = "o200k_base"  # GPT-5.x family; a close enough estimate for other providers' budgets
_PER_MESSAGE = 4  # role and separators, as in OpenAI's cookbook accounting
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
    counts = _count([m.content for m in messages])
    images = sum(len(m.images) for m in messages) * 800  # a typical detail:auto image
    return sum(counts) + _PER_MESSAGE * len(messages) + 3 + images
