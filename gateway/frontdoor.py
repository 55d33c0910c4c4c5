"""The front door: OpenAI-compatible, routes by model to ready pods (least in-flight), holds requests while
a model starts from zero (bounded per model and in total), and reports demand. Errors always reach clients
OpenAI-shaped: a JSON body with a status when nothing was sent yet, an SSE `data: {"error": ...}` event
once a 200 stream has begun.

This module reads a request and decides; the parts live beside it: routing (gateway.routing, each attempt
under a lease from gateway.lease), holding (gateway.holding), relaying (gateway.relay), SSE framing
(gateway.sse), client presence (gateway.clients) and the push to the scaler (gateway.activator)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common.bodies import BodyTimeout, BodyTooLarge, read_bounded
from common.callers import CallerCheck, NotAllowed
from gateway.access import AccessLog, CallRecord, record_of
from gateway.activator import Activator
from gateway.calls import BadCall, Call, read_call
from gateway.clients import ClientGone, unless_disconnected
from gateway.errors import body_refusal, error_type, openai_error
from gateway.holding import JSON_WHITESPACE, SSE, Held, Hold
from gateway.keys import KeyRing, OverLimit, Unauthorized
from gateway.lease import LeasedStream
from gateway.metrics import GatewayMetrics
from gateway.progress import progress_framing
from gateway.proxy import forward_headers
from gateway.relay import passthrough
from gateway.routing import BackendsFailed, Outgoing, Router, Upstream
from gateway.settings import FrontDoorSettings
from gateway.table import Allowed, ModelState, ModelTable, UnknownModel
from gateway.upstream import Upstreams
from policies import ApiKey


class BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


KEYS_SETTLE_SECONDS = 2.0  # longest wait of an unknown key for a namespace's keys being read the first time
CREDENTIAL_HEADERS = frozenset({"authorization", "api-key"})  # Hearth's key stops at the front door


class FrontDoor:
    def __init__(
        self,
        settings: FrontDoorSettings,
        table: ModelTable,
        upstreams: Upstreams,
        metrics: GatewayMetrics,
        activator: Activator,
        keys: KeyRing | None = None,
        internal: CallerCheck | None = None,
    ) -> None:
        self.settings = settings
        self.table = table
        self.metrics = metrics
        self.activator = activator
        self.keys = keys  # None: no API keys (a trusted network); every model is open to every caller
        # Waits (bounded) for the key Secrets of namespaces being read for the first time (KeyWatch.settle)
        self.keys_settle: Callable[[float], Awaitable[None]] | None = None
        self.internal = internal  # None: /demand answers anyone (outside a cluster)
        self.router = Router(table, upstreams, metrics, settings.retries)
        self.hold = Hold(table, self.router, metrics)
        self.started = int(time.time())

    async def call(self, request: Request) -> Response:
        """Any request that names a model: chat, completions, embeddings, responses, rerank, score, audio."""
        arrived = time.monotonic()
        record = record_of(request)
        try:
            key = await self._admit(request, record)
            call = await self._read(request)
            state = self._lookup(call.model, key)
        except BadRequest as bad:
            return bad.response
        if record is not None:
            record.model = state.key
        state.started += 1
        headers = forward_headers(request.headers.items())
        if key is not None:  # the model's server never sees a client's key
            headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
        # The runtime serves the model under its served name.
        outgoing = Outgoing(request.url.path, call.renamed(state.served_name), headers)
        stream = call.stream
        try:
            # A streaming answer's head comes at once; a whole answer's only when it is done, so only then
            # is the wait raced against the client leaving (which costs two tasks per request).
            # While held requests are let in after a cold start, a newcomer queues behind them (arrival order).
            upstream = None if state.wake.busy else await self._attempt(state, request, outgoing, stream)
            if upstream is not None:
                self.metrics.routing.labels(state.key).observe(time.monotonic() - arrived)
                return await self._relay(state, upstream, arrived, stream=stream)
            return await self._activate(state, request, outgoing, arrived, stream, call.model)
        except ClientGone:
            self.metrics.rejections.labels(state.key, "client_gone").inc()
            return Response(status_code=499)

    async def _admit(self, request: Request, record: CallRecord | None) -> ApiKey | None:
        """The caller's key, counted against its limits (its place released when the answer ends); None
        when keys are off. BadRequest with 401 or 429 otherwise."""
        key = await self._authenticate(request)
        if key is None:
            return None
        try:
            release = self.keys.admit(key) if self.keys is not None else None
        except OverLimit as over:  # counted by key in hearth_gateway_key_requests_total{code="429"}
            raise BadRequest(
                openai_error(429, over.message, "rate_limit_exceeded", over.code, over.retry_after)
            ) from None
        if release is not None and record is not None:
            record.releases.append(release)  # given back when the answer ends (gateway.access)
        elif release is not None:
            release()  # no record (an app built without create_app): given back now rather than leaked
        return key

    async def _authenticate(self, request: Request) -> ApiKey | None:
        if self.keys is None:
            return None
        try:
            # Two credentials (two Authorization headers, or one beside an api-key) were judged by the
            # first, while a proxy in front may have checked the other: one request, one credential.
            if sum(len(request.headers.getlist(name)) for name in CREDENTIAL_HEADERS) > 1:
                raise Unauthorized("ambiguous")
            try:
                key = self.keys.authenticate(request.headers)
            except Unauthorized as unknown:
                if unknown.reason != "invalid" or self.keys_settle is None:
                    raise
                await self.keys_settle(KEYS_SETTLE_SECONDS)  # a namespace's keys may be arriving
                key = self.keys.authenticate(request.headers)
        except Unauthorized as refused:
            self.metrics.auth_failures.labels(refused.reason).inc()
            message = {
                "missing": "You didn't provide an API key: send `Authorization: Bearer KEY` (a key is a Secret "
                "labelled hearth.dev/api-key in the namespace of the models it calls)",
                "ambiguous": "More than one credential provided: send one `Authorization: Bearer KEY` header "
                "(or one `api-key` header), not both and not twice",
            }.get(refused.reason, "Incorrect API key provided (unknown or revoked)")
            response = openai_error(401, message, "invalid_request_error", "invalid_api_key")
            response.headers["WWW-Authenticate"] = "Bearer"
            raise BadRequest(response) from None
        record = record_of(request)
        if record is not None:  # the access log and the key's metrics name it (never the key itself)
            record.key = key.name
        return key

    async def _attempt(self, state: ModelState, request: Request, outgoing: Outgoing, stream: bool) -> Upstream | None:
        attempt = self.router.open(state, outgoing)
        try:
            return await attempt if stream else await unless_disconnected(request, attempt)
        except BackendsFailed:
            return None  # held, and tried again a few times (gateway.holding)

    async def _read(self, request: Request) -> Call:
        """The call the body makes (gateway.calls), or BadRequest with the client's error."""
        settings = self.settings
        try:
            body = await read_bounded(request, settings.max_body_bytes, settings.body_timeout)
        except (BodyTimeout, BodyTooLarge) as refused:
            raise BadRequest(body_refusal(refused, settings.max_body_bytes, settings.body_timeout)) from None
        try:
            return read_call(body, request.headers.get("content-type"))
        except BadCall as bad:
            raise BadRequest(openai_error(400, bad.message, "invalid_request_error", bad.code)) from None

    def _lookup(self, requested: str, key: ApiKey | None) -> ModelState:
        """The model a name reaches for this caller; a model the key may not call does not exist for it
        (404, not 403: its existence is not revealed)."""
        allowed = key.may_call if key is not None else None
        try:
            return self.table.lookup(requested, allowed)
        except UnknownModel:
            visible = self.table.visible(allowed)
            known = ", ".join(sorted(self.table.plain_name(s, allowed) for s in visible)) or "none"
            raise BadRequest(
                openai_error(
                    404,
                    f"The model `{requested}` does not exist; known: {known}",
                    "invalid_request_error",
                    "model_not_found",
                )
            ) from None

    async def _activate(
        self, state: ModelState, request: Request, outgoing: Outgoing, arrived: float, stream: bool, requested: str
    ) -> Response:
        if not state.backends:
            self.activator.poke(state.key)
        scale = state.scale
        if state.failure:
            return self._refuse(
                state, 503, "model_start_failed", f"model {state.key} failed to start: {state.failure}", None
            )
        eta = state.eta  # the scaler's prediction of this model's start: when a retry will likely find it up
        if scale.cold_start == "reject":
            soon = f"in about {round(eta)}s" if eta is not None else "shortly"
            message = f"model {state.key} is starting from zero; retry {soon}"
            return self._refuse(state, 503, "model_starting", message, eta if eta is not None else 30)
        if state.held >= scale.queue_size or self.table.held_total >= self.settings.max_held:
            message = f"too many requests are waiting for model {state.key}"
            return self._refuse(state, 429, "queue_full", message, eta if eta is not None else 5)
        deadline = arrived + scale.activation_timeout
        held = self.hold.lease(state, arrived)
        ticket = state.wake.ticket()  # its place in line: arrival order
        if stream or scale.json_keepalive:
            framing, media = (SSE, "text/event-stream") if stream else (JSON_WHITESPACE, "application/json")
            if stream and scale.cold_start_progress and outgoing.path.endswith("/chat/completions"):
                framing = progress_framing(state, requested)
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
        """The models this caller's key may call, in OpenAI's list shape."""
        try:
            key = await self._authenticate(request)
        except BadRequest as bad:
            return bad.response
        allowed = key.may_call if key is not None else None
        data = [self._model(s, allowed) for s in sorted(self.table.visible(allowed), key=lambda s: s.key)]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        """GET /v1/models/{id}: one model, as the list shows it."""
        try:
            key = await self._authenticate(request)
            allowed = key.may_call if key is not None else None
            state = self._lookup(request.path_params["model"], key)
        except BadRequest as bad:
            return bad.response
        return JSONResponse(self._model(state, allowed))

    def _model(self, state: ModelState, allowed: Allowed | None) -> dict[str, Any]:
        return {
            "id": self.table.plain_name(state, allowed),
            "object": "model",
            "created": epoch_seconds(state.created) or self.started,
            "owned_by": state.namespace,
            "hearth": {"deployment": state.key, "readyPods": len(state.backends)},
        }

    async def demand(self, request: Request) -> Response:
        """Held and in-flight requests per model, for the scaler (which it may check by token review)."""
        if self.internal is not None:
            try:
                await self.internal.check(request.headers)
            except NotAllowed as refused:
                self.metrics.auth_failures.labels("internal").inc()
                return openai_error(refused.status, refused.message, "invalid_request_error", "not_allowed")
        return JSONResponse({"models": self.table.demand(), "heldTotal": self.table.held_total})


def epoch_seconds(timestamp: str) -> int | None:
    """A Kubernetes timestamp (RFC 3339) in seconds since the epoch; None when there is none."""
    try:
        return int(dt.datetime.fromisoformat(timestamp).timestamp()) if timestamp else None
    except ValueError:
        return None


# Every route of vLLM's OpenAI-compatible server that names a model in its body (a form field for audio).
MODEL_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/rerank",
    "/v1/score",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
)


async def _unknown(request: Request, exc: Exception) -> Response:
    """Starlette's 404 and 405, in OpenAI's shape (the SDK reads `error.message`)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        message, code = f"Method {request.method} is not allowed on {request.url.path}", "method_not_allowed"
    elif status == 404:
        message, code = f"Unknown request URL: {request.method} {request.url.path}", "unknown_url"
    else:
        message, code = "the front door failed on this request; see its log", "internal_error"
    return openai_error(status, message, "invalid_request_error" if status < 500 else "server_error", code)


def create_app(
    door: FrontDoor, extra_routes: list[Route] | None = None, access_log: logging.Logger | None = None
) -> Starlette:
    """The front door's app. Every call to a model is recorded from arrival to last byte (gateway.access):
    its key's place among its requests at once is given back there, and `access_log` gets its line."""
    routes = [
        *(Route(path, door.call, methods=["POST"]) for path in MODEL_ROUTES),
        Route("/v1/models", door.models, methods=["GET"]),
        Route("/v1/models/{model:path}", door.model, methods=["GET"]),
        Route("/demand", door.demand, methods=["GET"]),
        *(extra_routes or []),
    ]
    handlers = {404: _unknown, 405: _unknown, 500: _unknown}
    recorded = Middleware(AccessLog, metrics=door.metrics, logger=access_log)
    return Starlette(routes=routes, exception_handlers=handlers, middleware=[recorded])
