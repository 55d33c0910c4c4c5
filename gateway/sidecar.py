"""The sidecar in every model pod: fronts the runtime, counts in-flight work, and drains on termination.

On SIGTERM, and only then, it turns unready, answers new requests 503 with Retry-After so the front door
goes elsewhere, lets every open stream finish, and exits as soon as none is left or the drain timeout
passes. No fixed sleep: a pod with nothing in flight goes away at once. The model container's preStop
waits on `GET /drained`, which starts nothing: it answers once the drain that SIGTERM began is complete,
so the runtime is stopped only after its last stream (and no caller can drain a pod, so no pod carries a
secret for it). `/demand` answers counts to whoever the model pods' NetworkPolicy lets in (Hearth's
scalers).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from types import FrameType

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from common.bodies import BodyTimeout, BodyTooLarge
from common.http import bounded_head_protocol
from gateway.errors import body_refusal, openai_error
from gateway.exchange import ClientGone, Exchange, Mounted
from gateway.lease import Lease
from gateway.proxy import forward_headers
from gateway.relay import Answer, quiet_aborts, relay
from gateway.settings import SidecarSettings
from gateway.upstream import NotListening, UpstreamError, Upstreams, UpstreamTimeouts

log = logging.getLogger("hearth.sidecar")


class Drain:
    """In-flight accounting (a Counted for each request's Lease) and the drain state, shared by the routes
    and the signal handler."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.served = 0
        self.draining = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.started = asyncio.Event()

    def enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        self.served += 1
        if self.in_flight == 0:
            self.idle.set()

    def begin(self) -> None:
        if not self.draining:
            self.draining = True
            self.started.set()
            log.info("draining: %d request(s) in flight", self.in_flight)

    async def begun(self, limit: float) -> bool:
        """True once the drain has begun; False when `limit` seconds pass first."""
        return await _set_within(self.started, limit)

    async def wait(self, limit: float) -> bool:
        """True once nothing is in flight; False when `limit` seconds pass first."""
        return await _set_within(self.idle, limit)


async def _set_within(event: asyncio.Event, limit: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), limit)
    except TimeoutError:
        return False
    return True


def _nothing() -> None:
    pass


DRAIN_BEGINS_WITHIN = 10.0  # seconds /drained waits for the SIGTERM that begins the drain
OWN_METRICS = "/hearth/metrics"  # the sidecar's own; /metrics is the runtime's, passed through as it is
HEALTH_TIMEOUT = 1.0  # seconds the runtime gets to answer each readiness check


class SidecarMetrics:
    """The sidecar's own metrics, apart from the runtime's (which /metrics relays byte for byte)."""

    def __init__(self, drain: Drain, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        in_flight = Gauge("hearth_sidecar_in_flight", "Requests being relayed to the runtime.", registry=self.registry)
        in_flight.set_function(lambda: drain.in_flight)
        draining = Gauge("hearth_sidecar_draining", "1 once the pod drains.", registry=self.registry)
        draining.set_function(lambda: 1.0 if drain.draining else 0.0)
        self.registry.register(_Served(drain))
        self.refused = Counter(
            "hearth_sidecar_refused",
            "Requests not relayed, by reason: draining, runtime_down (the runtime refused the connection), "
            "upstream_unreachable, body (too large or too slow).",
            ["reason"],
            registry=self.registry,
        )


class _Served:
    """The drain's own count of requests relayed, exported as a counter (read, never counted twice)."""

    def __init__(self, drain: Drain) -> None:
        self._drain = drain

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("hearth_sidecar_served", "Requests relayed to their end.", value=self._drain.served)


def create_app(
    settings: SidecarSettings,
    drain: Drain,
    upstreams: Upstreams,
    metrics: SidecarMetrics | None = None,
) -> ASGIApp:
    own = metrics or SidecarMetrics(drain)

    async def ready(request: Request) -> Response:
        """The readiness probe: 200 while the runtime is healthy and the pod is not draining."""
        if drain.draining:
            return Response("draining", status_code=503)
        try:
            status = await upstreams.status(f"{settings.upstream}{settings.health_path}", HEALTH_TIMEOUT)
        except UpstreamError:
            return Response("runtime unreachable", status_code=503)
        return Response("ok" if status == 200 else "runtime not ready", status_code=200 if status == 200 else 503)

    async def demand(request: Request) -> Response:
        """In-flight requests of this pod, for the scaler."""
        return JSONResponse({"inFlight": drain.in_flight, "draining": drain.draining, "served": drain.served})

    async def drained(request: Request) -> Response:
        """Blocks until open streams are done: the pod's preStop hook."""
        # The kubelet runs this hook and sends this container its SIGTERM at about the same time: wait a
        # little for the drain to begin. A call outside a shutdown is answered 409 after that wait.
        if not await drain.begun(DRAIN_BEGINS_WITHIN):
            return JSONResponse({"error": "this pod is not shutting down", "drained": False}, 409)
        done = await drain.wait(settings.drain_timeout)
        return JSONResponse({"drained": done, "inFlight": drain.in_flight})

    async def forward(scope: Scope, receive: Receive, send: Send) -> None:
        """Everything else, relayed to the runtime and counted (503 `draining` once the pod goes away), on
        the front door's pieces: a plain ASGI exchange, its client watched, one relay."""
        exchange = Exchange(scope, receive, send)
        try:
            refusal = await _relay(exchange)
        except ClientGone:
            return
        if refusal is not None:
            await exchange.respond(refusal)
        else:
            await exchange.end()

    async def _relay(exchange: Exchange) -> Response | None:
        if drain.draining:
            own.refused.labels("draining").inc()
            refused = openai_error(503, "this replica is shutting down; retry", "service_unavailable", "draining", 1)
            refused.headers["X-Hearth-Draining"] = "1"  # the front door retries on another pod
            return refused
        try:
            body = await exchange.read_body(settings.max_body_bytes, settings.body_timeout)
        except (BodyTimeout, BodyTooLarge) as refused:
            own.refused.labels("body").inc()
            return body_refusal(refused, settings.max_body_bytes, settings.body_timeout)
        with exchange.watching():
            lease = Lease(drain)
            answer: Answer | None = None
            try:
                url = settings.upstream + exchange.path
                headers = forward_headers(exchange.headers.items())
                response = await upstreams.open(exchange.scope["method"], url, body, headers)
                answer = Answer(response, lease, "the runtime", exchange.path)
            except UpstreamError as exc:
                return _unreachable(exc)
            finally:
                if answer is None:  # not handed over: the lease ends here
                    lease.release()
            async with answer:
                await relay(exchange, answer, check=False, first=_nothing)
        return None

    def _unreachable(exc: BaseException) -> Response:
        if isinstance(exc, NotListening):
            # The engine is not running (killed, or restarting in place): this pod cannot serve until
            # its readiness says so again, so the front door is told to pass it over, as when draining,
            # and a request with nowhere else to go is held for the restart instead of failing.
            own.refused.labels("runtime_down").inc()
            message = "the model runtime of this replica is not running (restarting?); retry"
            down = openai_error(503, message, "service_unavailable", "runtime_down", 1)
            down.headers["X-Hearth-Draining"] = "runtime-down"  # the header older front doors know
            return down
        own.refused.labels("upstream_unreachable").inc()
        return openai_error(
            502, f"the model runtime did not answer: {type(exc).__name__}", "upstream_error", "upstream_unreachable", 1
        )

    async def own_metrics(request: Request) -> Response:
        """The sidecar's own metrics (`/metrics` is the runtime's, passed through)."""
        return Response(generate_latest(own.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route(OWN_METRICS, own_metrics),
        Route("/ready", ready),
        Route("/demand", demand),
        Route("/drained", drained, methods=["GET"]),
        Route("/{path:path}", Mounted(forward), methods=["GET", "POST"]),
    ]
    rest = Starlette(routes=routes)
    own_paths = frozenset({OWN_METRICS, "/ready", "/demand", "/drained"})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # What the runtime answers goes straight to the relay; the sidecar's own routes (and a method the
        # relay does not take: 405) through Starlette's router.
        if scope["type"] == "http" and scope["method"] in ("GET", "POST") and scope["path"] not in own_paths:
            await forward(scope, receive, send)
        else:
            await rest(scope, receive, send)

    return app


class _DrainingServer(uvicorn.Server):
    """uvicorn's SIGTERM means 'stop now'; here it means 'drain, then stop'."""

    def __init__(self, config: uvicorn.Config, drain: Drain, timeout: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._timeout = timeout
        self._watcher: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT:
            super().handle_exit(sig, frame)
            return
        self._drain.begin()
        if self._watcher is None:
            self._watcher = asyncio.get_event_loop().create_task(self._exit_when_idle())

    async def _exit_when_idle(self) -> None:
        drained = await self._drain.wait(self._timeout)
        log.info("drain %s; exiting", "complete" if drained else f"timed out with {self._drain.in_flight} open")
        await asyncio.sleep(0.05)  # let the last responses (and the preStop answer) flush
        self.should_exit = True


async def serve(settings: SidecarSettings) -> None:
    drain = Drain()
    timeouts = UpstreamTimeouts(connect=settings.connect_timeout, idle=settings.idle_stream_timeout)
    async with Upstreams(timeouts) as upstreams:
        app = create_app(settings, drain, upstreams)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            http=bounded_head_protocol(),
        )
        quiet_aborts()  # after the Config, which sets up uvicorn's loggers
        server = _DrainingServer(config, drain, settings.drain_timeout)
        await server.serve()
