"""Relaying an upstream answer to the client: passed through as it is while nothing was sent, or into a
stream that already began (a held request's), where an error can only be an SSE event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.responses import Response

from gateway.errors import openai_error
from gateway.lease import Lease, LeasedStream
from gateway.proxy import forward_headers, unsendable_header
from gateway.routing import Upstream
from gateway.sse import error_message, sse_error
from gateway.upstream import UpstreamError, UpstreamResponse


async def body(upstream: Upstream, *, stream: bool, first_byte: Callable[[], None]) -> AsyncIterator[bytes]:
    """The answer's bytes; a stream that breaks off ends with an SSE error event. The lease ends with the
    last byte (before the response's last message: a client that read it all never sees it counted)."""
    first = True
    try:
        async for chunk in upstream.response.aiter_raw():
            if first:
                first_byte()
                first = False
            yield chunk
    except UpstreamError as exc:
        if stream:
            yield sse_error(f"the model's stream broke off: {type(exc).__name__}", "upstream_error", "stream_broken")
    finally:
        upstream.lease.release()


async def passthrough(upstream: Upstream, *, stream: bool, first_byte: Callable[[], None]) -> Response:
    """The front door's answer: the backend's, relayed (see `relayed`)."""
    return await relayed(upstream.response, upstream.lease, body(upstream, stream=stream, first_byte=first_byte))


async def relayed(response: UpstreamResponse, lease: Lease, content: AsyncIterator[bytes]) -> Response:
    """An upstream answer with its own status and headers, `content` as its body; the lease ends with the
    response, however it ends. An answer whose headers the server cannot send (uvicorn would drop the client
    at the first byte) is a 502 in OpenAI's shape instead, after closing it and giving its lease back."""
    name = unsendable_header(response.headers.items())
    if name is not None:
        await response.aclose()
        lease.release()
        message = f"the model's answer has a header that cannot be relayed: {name[:64]!r}"
        return openai_error(502, message, "upstream_error", "upstream_bad_header")
    return LeasedStream(
        content, lease, response, status_code=response.status_code, headers=forward_headers(response.headers.items())
    )


async def into_stream(upstream: Upstream, first_byte: Callable[[], None]) -> AsyncIterator[bytes]:
    """The answer's bytes inside a committed 200 stream: an error answer becomes an error event. Ends the
    upstream and its lease when done (or when the consumer stops)."""
    response = upstream.response
    try:
        if response.status_code != 200:
            detail = (await response.aread()).decode(errors="replace")
            message = error_message(detail) or f"the model answered HTTP {response.status_code}"
            yield sse_error(message, "upstream_error", f"upstream_{response.status_code}")
            return
        async for chunk in body(upstream, stream=True, first_byte=first_byte):
            yield chunk
    finally:
        await response.aclose()
        upstream.lease.release()
