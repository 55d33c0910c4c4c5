"""Relaying one HTTP request to an upstream and streaming its answer back, cancelling the upstream
request when the client goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
from starlette.requests import Request

from gateway.streaming import PromptStreamingResponse

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def forward_headers(headers: httpx.Headers | dict[str, str] | object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {k: v for k, v in items if k.lower() not in HOP_BY_HOP}


async def open_upstream(client: httpx.AsyncClient, request: Request, url: str, body: bytes) -> httpx.Response:
    upstream = client.build_request(request.method, url, content=body, headers=forward_headers(request.headers))
    return await client.send(upstream, stream=True)


def relay(response: httpx.Response, on_close: Callable[[], None]) -> PromptStreamingResponse:
    """Stream `response` to the client; `on_close` runs once, however the stream ends."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()
            on_close()

    return PromptStreamingResponse(
        chunks(), status_code=response.status_code, headers=forward_headers(response.headers)
    )
