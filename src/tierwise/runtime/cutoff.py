"""A cut-off answer: generation stopped at the output-token limit, so its JSON never closed.

Quoting such an answer back in a repair prompt makes the model write the same long answer again and hit
the same limit (and the quote makes the prompt longer still). So a cut answer is named as such and asked
afresh, once, with a request for brevity; if that is cut too, the call escalates like any invalid answer.
"""

from __future__ import annotations

import json
import re

from tierwise.core import Message
from tierwise.providers.base import Completion

# OpenAI-compatible servers and llama.cpp say "length"; Anthropic says "max_tokens".
_CUT_REASONS = frozenset({"length", "max_tokens"})
_FENCE = re.compile(r"^\s*```(?:json)?\s*", re.S)

BREVITY = (
    "Your previous answer was cut off at the output limit of {limit} tokens before its JSON closed. "
    "Answer again from the start with only the JSON, and keep every text field short "
    "(two sentences at most) so that it ends well within the limit."
)


def _truncated_json(text: str) -> bool:
    """JSON that starts as an object or array and breaks off at its end (not JSON that is wrong inside)."""
    body = _FENCE.sub("", text, count=1).rstrip().removesuffix("```").rstrip()
    if not body or body[0] not in "{[":
        return False
    try:
        json.loads(body, strict=False)
    except json.JSONDecodeError as exc:
        # An unterminated string runs to the end by definition; other errors count only at the very end.
        return exc.msg.startswith("Unterminated string") or exc.pos >= len(body)
    except RecursionError:
        return False
    return False


def cut_off(completion: Completion) -> str | None:
    """Why ``completion`` is a cut-off answer, or None when it is not one."""
    if completion.finish_reason in _CUT_REASONS:
        return (
            f"cut off at the output limit ({completion.usage.output_tokens} output tokens, "
            f"finish_reason {completion.finish_reason})"
        )
    # With no finish reason reported, JSON that breaks off at its end is taken for a cut. A model that
    # said it stopped on its own ("stop") wrote broken JSON instead: that is repaired as usual.
    if completion.finish_reason is None and _truncated_json(completion.text):
        return "cut off: the JSON breaks off before it closes"
    return None


def brevity_messages(original: tuple[Message, ...], limit: int) -> tuple[Message, ...]:
    """The task's own messages (not the cut answer) plus a request to answer again, briefly."""
    return (*original, Message("user", BREVITY.format(limit=limit)))
