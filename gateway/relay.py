"""Relaying an upstream answer to the client: passed through as it is while nothing was sent, or into a
stream that already began (a held request's), where an error can only be an SSE event.

An answer that breaks off never reaches the client as a success: a stream is relayed one whole event at a
time (gateway.sse.WholeEvents) and ends with an error event the OpenAI SDK raises as `APIError`; any other
answer is aborted (the connection closed before its last chunk), which the SDK raises as a connection
error, as Envoy and nginx do with an upstream reset mid-body."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response

from gateway.errors import openai_error
from gateway.lease import Lease, LeasedStream
from gateway.proxy import forward_headers, unsendable_header
from gateway.routing import Upstream
from gateway.sse import MalformedStream, WholeEvents, error_message, last_events_of, sse_error
from gateway.upstream import UpstreamError, UpstreamResponse

log = logging.getLogger("hearth.relay")


class AnswerBrokenOff(Exception):
    """Raised out of a response body to make the server abort the connection (see `quiet_aborts`)."""


def is_event_stream(response: UpstreamResponse) -> bool:
    return response.status_code == 200 and response.headers.get("content-type", "").startswith("text/event-stream")


async def body(upstream: Upstream, *, stream: bool, first_byte: Callable[[], None]) -> AsyncIterator[bytes]:
    """The answer's bytes: a stream's in whole events, ending with an SSE error event if it breaks off or
    is malformed; any other answer aborted if it breaks off. The lease ends with the last byte (before the
    response's last message: a client that read it all never sees it counted)."""
    first = True
    events = WholeEvents(last_events_of(upstream.path)) if stream and is_event_stream(upstream.response) else None
    try:
        async for raw in upstream.response.aiter_raw():
            chunk = raw if events is None else events.feed(raw)
            if not chunk:
                continue
            if first:
                first_byte()
                first = False
            yield chunk
        if events is not None:
            events.end()
    except MalformedStream as bad:
        log.warning("the stream from %s %s: %s", upstream.backend.name, _ended, bad)
        if bad.relayable:
            yield bad.relayable
        yield sse_error(str(bad), "upstream_error", bad.code)
    except UpstreamError as exc:
        if events is None:
            log.warning("the answer from %s broke off (%s): aborting it", upstream.backend.name, type(exc).__name__)
            raise AnswerBrokenOff(f"the answer from {upstream.backend.name} broke off") from exc
        message = f"the model's stream broke off: {type(exc).__name__}"
        log.warning("the stream from %s %s: %s", upstream.backend.name, _ended, message)
        yield sse_error(message, "upstream_error", "stream_broken")
    finally:
        upstream.lease.release()


_ended = "ended with an error event"


async def as_is(response: UpstreamResponse, lease: Lease) -> AsyncIterator[bytes]:
    """The answer's bytes unchanged (the sidecar's relay: the front door checks streams), aborted if it
    breaks off; the lease ends with the last byte."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except UpstreamError as exc:
        log.warning("the runtime's answer broke off (%s): aborting it", type(exc).__name__)
        raise AnswerBrokenOff("the runtime's answer broke off") from exc
    finally:
        lease.release()


class _AbortFilter(logging.Filter):
    """Drops uvicorn's traceback for an abort Hearth asked for (and has logged in one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BaseExceptionGroup):
            return exc.subgroup(AnswerBrokenOff) is None
        return not isinstance(exc, AnswerBrokenOff)


def quiet_aborts() -> None:
    logging.getLogger("uvicorn.error").addFilter(_AbortFilter())


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


async def into_whole(upstream: Upstream, first_byte: Callable[[], None]) -> AsyncIterator[bytes]:
    """A whole answer inside a committed 200 (a held request kept alive with whitespace): its body as it is,
    whatever its status, aborted if it breaks off. Ends the upstream and its lease when done."""
    try:
        async for chunk in body(upstream, stream=False, first_byte=first_byte):
            yield chunk
    finally:
        await upstream.response.aclose()
        upstream.lease.release()
