"""Holding requests for a model at zero until a backend is ready: bounded waits, heartbeats to streaming
clients, and a clear error when the wait ends without one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from prometheus_client import Histogram

from gateway.errors import error_body, error_type
from gateway.lease import GaugeCount, Lease
from gateway.metrics import GatewayMetrics
from gateway.relay import into_stream, into_whole
from gateway.routing import BackendsFailed, Outgoing, Router, Upstream
from gateway.sse import sse_comment, sse_error
from gateway.table import Holding, ModelState, ModelTable
from gateway.wake import Turn

# A model whose ready pods fail before answering is tried this many times, the pauses between doubling
# from the first, then the request fails (Knative's activator likewise retries a failed proxy attempt a
# few times with backoff rather than waiting out its whole timeout).
FAILED_ATTEMPTS = 3
FIRST_PAUSE = 0.5


class Held(Exception):
    """A held request ends without a backend: `status` and `code` say why (timeout, start failure, pods
    that fail), `retry_after` when to try again (None: do not, it will not heal by itself)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = 30) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class WaitTimer:
    """Observes how long a request was held, when its hold ends (a Counted for the hold's lease)."""

    def __init__(self, histogram: Histogram, arrived: float) -> None:
        self._histogram, self._arrived = histogram, arrived

    def enter(self) -> None:
        pass

    def leave(self) -> None:
        self._histogram.observe(time.monotonic() - self._arrived)


@dataclass(frozen=True)
class Framing:
    """How a held answer that has already begun as a 200 says that it waits, how it fails, and how the
    model's answer follows."""

    opening: Callable[[str], bytes]  # the model's key -> the first bytes, sent at once
    beat: Callable[[float], bytes]  # seconds held so far -> a heartbeat
    error: Callable[[Held], bytes]
    relay: Callable[[Upstream, Callable[[], None]], AsyncIterator[bytes]]
    ready: Callable[[float], bytes] = lambda waited: b""  # seconds held -> bytes before the model's answer
    every: float | None = None  # seconds between beats (None: the model's heartbeat interval)


# A streaming request: SSE comments while held, an error event if the hold fails.
SSE = Framing(
    opening=lambda key: sse_comment(f"hearth: model {key} is starting; holding this request"),
    beat=lambda waited: sse_comment(f"hearth: still starting ({waited:.0f}s)"),
    error=lambda failed: sse_error(failed.message, error_type(failed.status), failed.code),
    relay=into_stream,
)
# A whole-answer request kept alive through proxies' idle timeouts (hearth.dev/json-keepalive): spaces
# while held (JSON allows whitespace before a value), then the answer's body, or the error object. The
# status is committed as 200 before the answer is known: an error arrives as a 200 with an `error` body.
JSON_WHITESPACE = Framing(
    opening=lambda key: b" ",
    beat=lambda waited: b" ",
    error=lambda failed: error_body(failed.message, error_type(failed.status), failed.code),
    relay=into_whole,
)


class Hold:
    def __init__(self, table: ModelTable, router: Router, metrics: GatewayMetrics) -> None:
        self.table = table
        self.router = router
        self.metrics = metrics

    def lease(self, state: ModelState, arrived: float) -> Lease:
        """Counts a held request on its model, the table and the gauge; observes its wait when released."""
        return Lease(
            Holding(self.table, state),
            GaugeCount(self.metrics.held.labels(state.key)),
            WaitTimer(self.metrics.activation_wait.labels(state.key), arrived),
        )

    async def wait(
        self,
        state: ModelState,
        outgoing: Outgoing,
        deadline: float,
        ticket: int,
        heartbeat: Callable[[float], None] | None = None,
        every: float | None = None,
    ) -> tuple[Upstream, Turn]:
        """Wait for a backend until `deadline`; `heartbeat(waited)` is called every heartbeat interval. The
        request waits in the model's line (gateway.wake) and goes when its turn comes, in arrival order;
        the caller says when its answer starts (`Turn.started`) or ends without one (`Turn.end`). `ticket`
        is its place in line, taken when its hold began (`state.wake.ticket()`)."""
        started = time.monotonic()
        interval = every or state.scale.heartbeat_interval
        next_beat = started + interval
        failures = 0
        place: asyncio.Future[bool] | None = None
        try:
            while True:
                if state.failure:
                    message = f"model {state.key} failed to start: {state.failure}"
                    raise Held(503, "model_start_failed", message, retry_after=None)
                changed = state.changed
                wake = min(deadline, next_beat) if heartbeat is not None else deadline
                if place is None:
                    place = state.wake.join(ticket)
                await asyncio.wait({place}, timeout=max(0.0, wake - time.monotonic()))  # keeps the place
                if place.done():
                    granted, place = place.result(), None
                    if granted:
                        turn, upstream = Turn(state.wake), None
                        try:
                            upstream = await self.router.open(state, outgoing)
                        except BackendsFailed as failed:
                            failures += 1
                            if failures >= FAILED_ATTEMPTS:
                                times = f"failed {failures} times before answering ({failed})"
                                message = f"the ready pods of model {state.key} {times}"
                                raise Held(502, "upstream_unreachable", message, retry_after=1) from None
                            wake = min(wake, time.monotonic() + FIRST_PAUSE * 2 ** (failures - 1))
                        finally:
                            if upstream is None:  # no answer: the place goes back to the line
                                turn.end()
                        if upstream is not None:
                            return upstream, turn
                        # Its pods failed or are all draining: wait for the model to change, then line up.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(changed.wait(), max(0.0, wake - time.monotonic()))
                now = time.monotonic()
                if now >= deadline:
                    raise Held(
                        504,
                        "activation_timeout",
                        f"model {state.key} did not become ready within {state.scale.activation_timeout:g}s",
                    )
                if heartbeat is not None and next_beat <= now:
                    heartbeat(now - started)
                    next_beat = now + interval
        finally:
            if place is not None:
                state.wake.quit(ticket, place)

    async def stream(
        self,
        state: ModelState,
        outgoing: Outgoing,
        deadline: float,
        held: Lease,
        ticket: int,
        first_byte: Callable[[], None],
        framing: Framing = SSE,
    ) -> AsyncIterator[bytes]:
        """A held client's answer, begun at once as a 200 (`framing` says in what words): an opening at
        once, heartbeats while held, then the model's answer (or the error). `held` is released as soon as
        the hold ends."""
        beats: asyncio.Queue[float] = asyncio.Queue(maxsize=1)

        def beat(waited: float) -> None:
            if beats.empty():
                beats.put_nowait(waited)

        began = time.monotonic()
        hold = asyncio.ensure_future(self.wait(state, outgoing, deadline, ticket, heartbeat=beat, every=framing.every))
        next_beat: asyncio.Future[float] | None = None
        try:
            yield framing.opening(state.key)
            while not hold.done():
                next_beat = asyncio.ensure_future(beats.get())
                await asyncio.wait({hold, next_beat}, return_when=asyncio.FIRST_COMPLETED)
                if next_beat.done():
                    yield framing.beat(next_beat.result())
                else:
                    next_beat.cancel()
            held.release()
            try:
                found = hold.result()
            except Held as failed:
                self.metrics.rejections.labels(state.key, failed.code).inc()
                self.metrics.requests.labels(state.key, str(failed.status)).inc()
                yield framing.error(failed)
                return
            upstream, turn = found
            self.metrics.requests.labels(state.key, str(upstream.response.status_code)).inc()
            ready = framing.ready(time.monotonic() - began) if upstream.response.status_code == 200 else b""
            if ready:
                yield ready

            def first() -> None:
                turn.started()
                first_byte()

            async for chunk in framing.relay(upstream, first):
                yield chunk
        finally:
            if next_beat is not None:
                next_beat.cancel()
            if not hold.done():
                hold.cancel()
                self.metrics.rejections.labels(state.key, "client_gone").inc()
            elif not hold.cancelled() and hold.exception() is None:
                # A backend found just as the client left: give its request and turn back (no-ops once
                # relayed).
                upstream, turn = hold.result()
                turn.end()
                await upstream.response.aclose()
                upstream.lease.release()
            held.release()
