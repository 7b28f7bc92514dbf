"""``GET /v1/models``: the routing targets (``tierwise/auto`` and the three tiers) and the catalog."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tierwise.server.jsonio import JSONBody
from tierwise.server.proxy import Proxy, answering
from tierwise.server.target import AUTO, TIER_MODELS


def routes(proxy: Proxy) -> list[Route]:
    created = int(time.time())
    ids = [AUTO, *TIER_MODELS, *(spec.id for spec in proxy.catalog)]
    listing = {
        "object": "list",
        "data": [
            {
                "id": i,
                "object": "model",
                "created": created,
                "owned_by": "tierwise" if i.startswith("tierwise/") else i.split("/", 1)[0],
            }
            for i in ids
        ],
    }

    @answering
    async def models(request: Request) -> Response:
        await proxy.admit(request)
        return JSONBody(listing)

    return [Route("/v1/models", models, methods=["GET"])]
