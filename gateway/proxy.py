"""Relaying one HTTP answer back to the client, cancelling the upstream request when the client goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable

from gateway.streaming import PromptStreamingResponse
from gateway.upstream import UpstreamResponse

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


def forward_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in headers if k.lower() not in HOP_BY_HOP}


def relay(response: UpstreamResponse, on_close: Callable[[], None]) -> PromptStreamingResponse:
    """Stream `response` to the client; `on_close` runs once, however the stream ends."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()
            on_close()

    return PromptStreamingResponse(
        chunks(), status_code=response.status_code, headers=forward_headers(response.headers.items())
    )
