"""The front door: OpenAI-compatible, routes by model to ready pods (least in-flight), holds requests while
a model starts from zero (bounded per model and in total), and reports demand. Errors always reach clients
OpenAI-shaped: a JSON body with a status when nothing was sent yet, an SSE `data: {"error": ...}` event
once a 200 stream has begun.

This module reads a request and decides; the parts live beside it: routing (gateway.routing, each attempt
under a lease from gateway.lease), holding (gateway.holding), relaying (gateway.relay), SSE framing
(gateway.sse), client presence (gateway.clients) and the push to the scaler (gateway.activator)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common.bodies import BodyTimeout, BodyTooLarge, read_bounded
from gateway.activator import Activator
from gateway.clients import ClientGone, unless_disconnected
from gateway.errors import body_refusal, error_type, openai_error
from gateway.holding import JSON_WHITESPACE, SSE, Held, Hold
from gateway.lease import LeasedStream
from gateway.metrics import GatewayMetrics
from gateway.proxy import forward_headers
from gateway.relay import passthrough
from gateway.routing import BackendsFailed, Outgoing, Router, Upstream
from gateway.settings import FrontDoorSettings
from gateway.table import ModelState, ModelTable, UnknownModel
from gateway.upstream import Upstreams


class BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class FrontDoor:
    def __init__(
        self,
        settings: FrontDoorSettings,
        table: ModelTable,
        upstreams: Upstreams,
        metrics: GatewayMetrics,
        activator: Activator,
    ) -> None:
        self.settings = settings
        self.table = table
        self.metrics = metrics
        self.activator = activator
        self.router = Router(table, upstreams, metrics, settings.retries)
        self.hold = Hold(table, self.router, metrics)

    async def completions(self, request: Request) -> Response:
        arrived = time.monotonic()
        try:
            body, payload = await self._read(request)
            state = self._lookup(payload["model"])
        except BadRequest as bad:
            return bad.response
        state.started += 1
        if payload["model"] != state.served_name:  # the runtime serves the model under its served name
            payload["model"] = state.served_name
            body = orjson.dumps(payload)
        outgoing = Outgoing(request.url.path, body, forward_headers(request.headers.items()))
        stream = bool(payload.get("stream"))
        try:
            # A streaming answer's head comes at once; a whole answer's only when it is done, so only then
            # is the wait raced against the client leaving (which costs two tasks per request).
            # While held requests are let in after a cold start, a newcomer queues behind them (arrival order).
            upstream = None if state.wake.busy else await self._attempt(state, request, outgoing, stream)
            if upstream is not None:
                self.metrics.routing.labels(state.key).observe(time.monotonic() - arrived)
                return await self._relay(state, upstream, arrived, stream=stream)
            return await self._activate(state, request, outgoing, arrived, stream)
        except ClientGone:
            self.metrics.rejections.labels(state.key, "client_gone").inc()
            return Response(status_code=499)

    async def _attempt(self, state: ModelState, request: Request, outgoing: Outgoing, stream: bool) -> Upstream | None:
        attempt = self.router.open(state, outgoing)
        try:
            return await attempt if stream else await unless_disconnected(request, attempt)
        except BackendsFailed:
            return None  # held, and tried again a few times (gateway.holding)

    async def _read(self, request: Request) -> tuple[bytes, dict[str, Any]]:
        """The request's body and its JSON object with a string `model`, or BadRequest with the client's error."""
        settings = self.settings
        try:
            body = await read_bounded(request, settings.max_body_bytes, settings.body_timeout)
        except (BodyTimeout, BodyTooLarge) as refused:
            raise BadRequest(body_refusal(refused, settings.max_body_bytes, settings.body_timeout)) from None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest(
                openai_error(400, "request body is not valid JSON", "invalid_request_error", "invalid_json")
            ) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
            raise BadRequest(
                openai_error(
                    400,
                    "request body must be a JSON object with a string `model`",
                    "invalid_request_error",
                    "missing_model",
                )
            )
        stream = payload.get("stream")
        if stream is not None and not isinstance(stream, bool):  # "false" is a string, and truthy: refuse it
            kind = type(stream).__name__
            raise BadRequest(
                openai_error(
                    400,
                    f"Invalid type for 'stream': expected a boolean, but got {kind} instead",
                    "invalid_request_error",
                    "invalid_type",
                )
            )
        return body, payload

    def _lookup(self, requested: str) -> ModelState:
        try:
            return self.table.lookup(requested)
        except UnknownModel:
            known = ", ".join(sorted(s.key for s in self.table.models.values())) or "none"
            raise BadRequest(
                openai_error(
                    404,
                    f"The model `{requested}` does not exist; known: {known}",
                    "invalid_request_error",
                    "model_not_found",
                )
            ) from None

    async def _activate(
        self, state: ModelState, request: Request, outgoing: Outgoing, arrived: float, stream: bool
    ) -> Response:
        if not state.backends:
            self.activator.poke(state.key)
        scale = state.scale
        if state.failure:
            return self._refuse(
                state, 503, "model_start_failed", f"model {state.key} failed to start: {state.failure}", None
            )
        if scale.cold_start == "reject":
            return self._refuse(
                state, 503, "model_starting", f"model {state.key} is starting from zero; retry shortly", 30
            )
        if state.held >= scale.queue_size or self.table.held_total >= self.settings.max_held:
            return self._refuse(state, 429, "queue_full", f"too many requests are waiting for model {state.key}", 5)
        deadline = arrived + scale.activation_timeout
        held = self.hold.lease(state, arrived)
        ticket = state.wake.ticket()  # its place in line: arrival order
        if stream or scale.json_keepalive:
            framing, media = (SSE, "text/event-stream") if stream else (JSON_WHITESPACE, "application/json")
            first_byte = self._first_byte(state, arrived)
            return LeasedStream(
                self.hold.stream(state, outgoing, deadline, held, ticket, first_byte, framing),
                held,
                media_type=media,
                headers={"Cache-Control": "no-cache"},
            )
        with held:
            try:
                upstream, turn = await unless_disconnected(request, self.hold.wait(state, outgoing, deadline, ticket))
            except Held as failed:
                return self._refuse(state, failed.status, failed.code, failed.message, failed.retry_after)
        turn.started()  # a whole answer's head comes with the answer: it has started
        return await self._relay(state, upstream, arrived, stream=False)

    def _first_byte(self, state: ModelState, arrived: float) -> Callable[[], None]:
        histogram = self.metrics.first_byte.labels(state.key)
        return lambda: histogram.observe(time.monotonic() - arrived)

    async def _relay(self, state: ModelState, upstream: Upstream, arrived: float, *, stream: bool) -> Response:
        relayed = await passthrough(upstream, stream=stream, first_byte=self._first_byte(state, arrived))
        self.metrics.requests.labels(state.key, str(relayed.status_code)).inc()
        return relayed

    def _refuse(self, state: ModelState, status: int, code: str, message: str, retry_after: float | None) -> Response:
        """A refusal; `retry_after` None: a failure that will not heal by itself, which clients must not retry."""
        self.metrics.rejections.labels(state.key, code).inc()
        self.metrics.requests.labels(state.key, str(status)).inc()
        return openai_error(status, message, error_type(status), code, retry_after, final=retry_after is None)

    # --- the rest of the API -------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        created = int(time.time())
        data = [
            {
                "id": self.table.plain_name(s),
                "object": "model",
                "created": created,
                "owned_by": "hearth",
                "hearth": {"deployment": s.key, "readyPods": len(s.backends)},
            }
            for s in sorted(self.table.models.values(), key=lambda s: s.key)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def demand(self, request: Request) -> Response:
        return JSONResponse({"models": self.table.demand(), "heldTotal": self.table.held_total})


def create_app(door: FrontDoor, extra_routes: list[Route] | None = None) -> Starlette:
    routes = [
        Route("/v1/chat/completions", door.completions, methods=["POST"]),
        Route("/v1/completions", door.completions, methods=["POST"]),
        Route("/v1/models", door.models, methods=["GET"]),
        Route("/demand", door.demand, methods=["GET"]),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes)
