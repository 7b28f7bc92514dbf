"""Warm-up at start-up: the proxy loads the provider clients, the tokenizer, the kind classifier and e5
once, before it answers, so the first ``tierwise/auto`` request does not wait seconds for them."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from tierwise.runtime.warm import warm_local

if TYPE_CHECKING:
    from tierwise.session import Session

log = logging.getLogger("tierwise.server")


async def warm_up(session: Session) -> float:
    """Load the providers, tokenizer, kind classifier and e5 the session's runtime uses; the seconds it took.

    A part that fails to load is logged and skipped: the request that needs it meets the error itself.
    """
    t0 = time.perf_counter()
    _providers(session)  # on the loop: the registry is not shared with threads
    await warm_local(session.runtime.inferrer if session.runtime is not None else None, e5=True)
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
