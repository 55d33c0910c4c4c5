"""Relaying an upstream answer to the client, for the front door and the sidecar alike: passed through as it
is while nothing was sent, or into a stream that already began (a held request's), where an error can
only be an SSE event.

An answer that breaks off never reaches the client as a success: a checked stream is relayed one whole
event at a time (gateway.sse.WholeEvents) and ends with an error event the OpenAI SDK raises as
`APIError`; any other answer is aborted (the connection closed before its last chunk), which the SDK
raises as a connection error, as Envoy and nginx do with an upstream reset mid-body.

An Answer owns what its request holds while it is relayed: the upstream response, the lease counting it
in flight and its place in the wake-up window. `async with answer:` gives all of it back once, when the
relay ends however it ends, before the last message goes out (a client that read the whole answer never
sees it still counted)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from gateway.access import TAIL_READS
from gateway.errors import openai_error
from gateway.exchange import Exchange
from gateway.lease import Lease
from gateway.proxy import forward_headers, unsendable_header
from gateway.sse import MalformedStream, WholeEvents, error_message, last_events_of, sse_error
from gateway.upstream import UpstreamError, UpstreamResponse
from gateway.wake import Turn

log = logging.getLogger("hearth.relay")


class AnswerBrokenOff(Exception):
    """Raised out of an app to make the server abort the connection (see `quiet_aborts`)."""


class Answer:
    """An answer's head from `source` (a pod, or the runtime), and what the request holds until it ends."""

    def __init__(
        self, response: UpstreamResponse, lease: Lease, source: str, path: str, turn: Turn | None = None
    ) -> None:
        self.response = response
        self.lease = lease
        self.source = source
        self.path = path  # the route asked: how its stream ends (gateway.sse.last_events_of)
        self.turn = turn  # a held request's place in the wake-up window, until its answer starts

    async def __aenter__(self) -> Answer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.lease.release()
        if self.turn is not None:
            self.turn.end()  # an answer that never started gives its place back (no-op once started)
        await self.response.aclose()


def is_event_stream(response: UpstreamResponse) -> bool:
    return response.status_code == 200 and response.headers.get("content-type", "").startswith("text/event-stream")


async def relay(exchange: Exchange, answer: Answer, *, check: bool, first: Callable[[], None]) -> bytes:
    """Relay `answer` (its head too, unless the exchange has begun); `check`: a stream is relayed in whole,
    checked events. `first()` is called at the first byte of the answer's body. Every message but the last
    is sent (the caller sends it after giving the answer back). Returns the answer's last few reads (its
    usage, when it reports one, is in them): the chunks are only referenced on the way, never searched."""
    response = answer.response
    if not exchange.begun:
        name = unsendable_header(response.headers.items())
        if name is not None:  # uvicorn would drop the client at the first byte: a 502 in OpenAI's shape
            message = f"the model's answer has a header that cannot be relayed: {name[:64]!r}"
            await exchange.respond(openai_error(502, message, "upstream_error", "upstream_bad_header"))
            return b""
        await exchange.start(response.status_code, forward_headers(response.headers.items()))
    elif check and response.status_code != 200:  # a held stream's 200 was sent: the error is an event
        detail = (await response.aread()).decode(errors="replace")
        message = error_message(detail) or f"the model answered HTTP {response.status_code}"
        await exchange.write(sse_error(message, "upstream_error", f"upstream_{response.status_code}"))
        return b""
    events = WholeEvents(last_events_of(answer.path)) if check and is_event_stream(response) else None
    send = exchange.send
    tail: deque[bytes] = deque(maxlen=TAIL_READS)
    try:
        async for raw in response.aiter_raw():
            chunk = raw if events is None else events.feed(raw)
            if not chunk:
                continue
            if not tail:
                first()
            tail.append(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if events is not None:
            events.end()
    except MalformedStream as bad:
        log.warning("the stream from %s %s: %s", answer.source, _ENDED, bad)
        if bad.relayable:
            await exchange.write(bad.relayable)
        await exchange.write(sse_error(str(bad), "upstream_error", bad.code))
    except UpstreamError as exc:
        if events is None:
            log.warning("the answer from %s broke off (%s): aborting it", answer.source, type(exc).__name__)
            raise AnswerBrokenOff(f"the answer from {answer.source} broke off") from exc
        message = f"the model's stream broke off: {type(exc).__name__}"
        log.warning("the stream from %s %s: %s", answer.source, _ENDED, message)
        await exchange.write(sse_error(message, "upstream_error", "stream_broken"))
    return b"".join(tail)


_ENDED = "ended with an error event"


class _AbortFilter(logging.Filter):
    """Drops uvicorn's traceback for an abort Hearth asked for (and has logged in one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BaseExceptionGroup):
            return exc.subgroup(AnswerBrokenOff) is None
        return not isinstance(exc, AnswerBrokenOff)


def quiet_aborts() -> None:
    logging.getLogger("uvicorn.error").addFilter(_AbortFilter())
