"""The floor of a Python proxy built on the openai SDK: a Starlette app under uvicorn (uvloop, httptools,
as ``tierwise serve``) that passes each ``/v1/chat/completions`` body to the upstream through the SDK's
client (its aiohttp transport, raw bytes in and out, as tierwise's provider) and nothing else: no routing,
key, budget or ledger. ``bench.proxy_overhead`` runs it as the baseline of what any such proxy adds.

    python -m bench.bare_forwarder UPSTREAM_URL PORT
"""

from __future__ import annotations

import os
import sys

import httpx
import openai
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app(upstream: str) -> Starlette:
    client = openai.AsyncOpenAI(
        base_url=upstream,
        api_key=os.environ.get("BENCH_UPSTREAM_KEY", "bench"),
        max_retries=0,
        http_client=openai.DefaultAioHttpClient(),
    )

    async def chat(request: Request) -> Response:
        body = await request.body()
        resp = await client.post("/chat/completions", content=body, cast_to=httpx.Response)
        return Response(resp.content, status_code=resp.status_code, media_type="application/json")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


if __name__ == "__main__":
    uvicorn.run(
        create_app(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=75,
    )
