"""The one way from a call to a backend's answer: `Gate.acquire` returns at once when a ready pod answers,
and otherwise holds the call in its model's wake-up line (gateway.wake) until a pod answers or the call's
deadline passes. A hold is shown to the client by the call's framing (heartbeats, cold-start progress),
never by a second path: a held call and a direct one leave here the same way, as an Answer.

Knative's activator waits and routes in one call (`throttler.Try`); KEDA's interceptor bounds the
cold-start wait with one context deadline. Here the deadline is one scope (`asyncio.timeout_at`) around
each wait in line; an answer being computed is never cut by it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from prometheus_client import Histogram

from gateway.activator import Activator
from gateway.framing import Refused
from gateway.lease import GaugeCount, Lease
from gateway.metrics import GatewayMetrics
from gateway.modelcall import ModelCall
from gateway.relay import Answer
from gateway.routing import BackendsFailed, Router
from gateway.table import Holding, ModelState, ModelTable
from gateway.wake import Turn

# A model whose ready pods fail before answering is tried this many times, the pauses between doubling
# from the first, then the request fails (Knative's activator likewise retries a failed proxy attempt a
# few times with backoff rather than waiting out its whole timeout).
FAILED_ATTEMPTS = 3
FIRST_PAUSE = 0.5


class WaitTimer:
    """Observes how long a request was held, when its hold ends (a Counted for the hold's lease)."""

    def __init__(self, histogram: Histogram, arrived: float) -> None:
        self._histogram, self._arrived = histogram, arrived

    def enter(self) -> None:
        pass

    def leave(self) -> None:
        self._histogram.observe(time.monotonic() - self._arrived)


class Gate:
    def __init__(
        self, table: ModelTable, router: Router, metrics: GatewayMetrics, activator: Activator, max_held: int
    ) -> None:
        self.table = table
        self.router = router
        self.metrics = metrics
        self.activator = activator
        self.max_held = max_held

    async def acquire(self, call: ModelCall) -> Answer:
        """The answer's head from a ready pod of the call's model; Refused when there will be none."""
        state = call.state
        # While held calls are let in after a cold start, a newcomer queues behind them (arrival order).
        if not state.wake.busy:
            try:
                answer = await self.router.open(state, call.outgoing)
            except BackendsFailed:
                answer = None  # held, and tried again a few times
            if answer is not None:
                self.metrics.routing.labels(state.key).observe(time.monotonic() - call.arrived)
                return answer
        if not state.backends:
            self.activator.poke(state.key)
        self._may_hold(state)
        with self._held(state, call.arrived):
            return await self._hold(call)

    def _may_hold(self, state: ModelState) -> None:
        scale = state.scale
        if state.failure:
            raise Refused(503, "model_start_failed", f"model {state.key} failed to start: {state.failure}", None)
        eta = state.eta  # the scaler's prediction of this model's start: when a retry will likely find it up
        if scale.cold_start == "reject":
            soon = f"in about {round(eta)}s" if eta is not None else "shortly"
            message = f"model {state.key} is starting from zero; retry {soon}"
            raise Refused(503, "model_starting", message, eta if eta is not None else 30)
        if state.held >= scale.queue_size or self.table.held_total >= self.max_held:
            message = f"too many requests are waiting for model {state.key}"
            raise Refused(429, "queue_full", message, eta if eta is not None else 5)

    def _held(self, state: ModelState, arrived: float) -> Lease:
        """Counts a held request on its model, the table and the gauge; observes its wait when released."""
        return Lease(
            Holding(self.table, state),
            GaugeCount(self.metrics.held.labels(state.key)),
            WaitTimer(self.metrics.activation_wait.labels(state.key), arrived),
        )

    async def _hold(self, call: ModelCall) -> Answer:
        state = call.state
        ticket = state.wake.ticket()  # its place in line: arrival order
        await call.hold()
        failures = 0
        while True:
            changed = state.changed
            turn = await self._turn(call, ticket)
            answer: Answer | None = None  # also when the attempt is cancelled (its client left)
            try:
                answer = await self.router.open(state, call.outgoing)
            except BackendsFailed as failed:
                failures += 1
                if failures >= FAILED_ATTEMPTS:
                    times = f"failed {failures} times before answering ({failed})"
                    message = f"the ready pods of model {state.key} {times}"
                    raise Refused(502, "upstream_unreachable", message, 1) from None
            finally:
                if answer is None:  # no answer: the place goes back to the line
                    turn.end()
            if answer is not None:
                answer.turn = turn  # the answer holds the place until it starts (the window grows)
                return answer
            # Its pods failed or are all draining: wait for the model to change (or a pause), then line up.
            pause = FIRST_PAUSE * 2 ** (failures - 1) if failures else call.beat_every
            async with self._until_deadline(call):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), pause)
            await call.beat(call.waited())  # the line's beats restart

    async def _turn(self, call: ModelCall, ticket: int) -> Turn:
        """Waits in line (beating) until this ticket's turn comes; Refused at the deadline or if the model
        failed to start."""
        state = call.state
        async with self._until_deadline(call):
            while True:
                if state.failure:
                    message = f"model {state.key} failed to start: {state.failure}"
                    raise Refused(503, "model_start_failed", message, None)
                place = state.wake.join(ticket)
                granted = False
                try:
                    while not place.done():
                        await asyncio.wait({place}, timeout=call.beat_every)  # keeps the place
                        if not place.done():
                            await call.beat(call.waited())
                    granted = place.result()  # False: asked to look at the model again
                finally:
                    if not granted:
                        state.wake.quit(ticket, place)
                if granted:
                    return Turn(state.wake)

    @contextlib.asynccontextmanager
    async def _until_deadline(self, call: ModelCall) -> AsyncIterator[None]:
        """The call's deadline as a scope: Refused (504) when it passes inside."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + call.deadline - time.monotonic()):
                yield
        except TimeoutError:
            timeout = call.state.scale.activation_timeout
            message = f"model {call.state.key} did not become ready within {timeout:g}s"
            raise Refused(504, "activation_timeout", message, 30) from None
