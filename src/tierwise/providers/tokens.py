"""Offline token counting from vocabularies compiled into the toktok-rs package (no download)."""

from __future__ import annotations

from collections.abc import Sequence

import toktok

from tierwise.providers.base import Message

_ENCODING = "o200k_base"  # GPT-5.x family; a close enough estimate for other providers' budgets
_PER_MESSAGE = 4  # role and separators, as in OpenAI's cookbook accounting


def count_text(text: str) -> int:
    return toktok.batch_count([text], _ENCODING)[0]


def count_texts(texts: Sequence[str]) -> list[int]:
    return list(toktok.batch_count(list(texts), _ENCODING))


def count_messages(messages: Sequence[Message]) -> int:
    """Input tokens of a chat request: contents plus a small per-message overhead."""
    if not messages:
        return 0
    counts = toktok.batch_count([m.content for m in messages], _ENCODING)
    images = sum(len(m.images) for m in messages) * 800  # a typical detail:auto image
    return sum(counts) + _PER_MESSAGE * len(messages) + 3 + images
