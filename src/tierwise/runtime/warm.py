"""Warm-up: load what the first calls would otherwise load while they wait.

Lazily, the first call without a kind loads the static embedder and the kind classifier (~0.6 s, the fit
cached on disk), the first unsure one loads e5 and embeds the kind descriptions, and the first that needs an
exact token count (a call under a money or token cap, a stream without usage) loads the tokenizer (~0.5 s):
CPU on the event loop, so every other call waits too. The proxy warms all of it before it answers; a batch
warms the classifier when its items' kinds are inferred, and the tokenizer when its budget caps spend.
"""

from __future__ import annotations

import asyncio
import logging

from tierwise.models.tokens import count_texts
from tierwise.routing.kinds import KindInferrer, local_embed

log = logging.getLogger("tierwise.runtime")

_TEXT = "Summarize this support ticket in one line: my card was charged twice."


async def warm_local(inferrer: KindInferrer | None, *, e5: bool = True, tokenizer: bool = True) -> None:
    """Load the kind classifier (and e5 when ``e5``, the tokenizer when ``tokenizer``) in worker threads.
    A part that fails to load is logged and skipped: the call that needs it meets the error itself."""
    jobs = [asyncio.to_thread(_tokenizer)] if tokenizer else []
    if inferrer is not None:
        jobs.append(asyncio.to_thread(_kinds, inferrer, e5))
    await asyncio.gather(*jobs)


def _tokenizer() -> None:
    try:
        count_texts([_TEXT])
    except Exception:  # warm-up only saves time
        log.warning("warm-up: the tokenizer did not load", exc_info=True)


def _kinds(inferrer: KindInferrer, e5: bool) -> None:
    try:
        inferrer.classify(_TEXT, settle=True)  # fits (or loads) the classifier, loads the static embedder
        if e5 and inferrer.has_e5:  # loads e5 and embeds the kind descriptions
            inferrer.from_vector(local_embed([_TEXT])[0], _TEXT)
    except Exception:  # warm-up only saves time
        log.warning("warm-up: kind inference did not load", exc_info=True)
