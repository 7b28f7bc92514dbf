"""Warm-up at start-up: load what the first requests would otherwise load while a client waits.

Lazily, the first ``tierwise/auto`` request fits the kind classifier and loads the static embedder, the
first unsure one loads e5 and embeds the kind descriptions, the first call loads the tokenizer and builds
the provider's client: seconds of CPU on a small machine. The server does it once before it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from tierwise.models.tokens import count_texts
from tierwise.routing.kinds import local_embed

if TYPE_CHECKING:
    from tierwise.session import Session

log = logging.getLogger("tierwise.server")

_TEXT = "Summarize this support ticket in one line: my card was charged twice."


async def warm_up(session: Session) -> float:
    """Load the providers, tokenizer, kind classifier and e5 the session's runtime uses; the seconds it took.

    A part that fails to load is logged and skipped: the request that needs it meets the error itself.
    """
    t0 = time.perf_counter()
    _providers(session)  # on the loop: the registry is not shared with threads
    await asyncio.to_thread(_local_models, session)
    took = time.perf_counter() - t0
    log.info("warmed up in %.2f s", took)
    return took


def _providers(session: Session) -> None:
    providers = session.providers
    if providers is None:
        return
    names = {session.config.catalog.get(model).provider for model in session.config.tiers.values()}
    for name in sorted(names):
        providers.usable(name)  # builds the client (a provider without its key stays unbuilt)


def _local_models(session: Session) -> None:
    try:
        count_texts([_TEXT])
    except Exception:  # warm-up only saves time: the request that needs it meets the error itself
        log.warning("warm-up: the tokenizer did not load", exc_info=True)
    inferrer = session.runtime.inferrer if session.runtime is not None else None
    if inferrer is None:
        return
    try:
        inferrer.classify(_TEXT, settle=True)  # fits the process-wide classifier, loads the static embedder
        if inferrer.has_e5:  # loads e5 and embeds the kind descriptions, as the first unsure request would
            inferrer.from_vector(local_embed([_TEXT])[0], _TEXT)
    except Exception:
        log.warning("warm-up: kind inference did not load", exc_info=True)
