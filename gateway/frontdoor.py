"""The front door: OpenAI-compatible, routes by model to ready pods (least in-flight), holds requests while
a model starts from zero (bounded per model and in total), and reports demand. Errors always reach clients
OpenAI-shaped: a JSON body with a status when nothing was sent yet, an SSE `data: {"error": ...}` event
once a 200 stream has begun.

A call to a model takes one path (`FrontDoor.call`): admitted (its key), read (gateway.calls), looked up,
made one object (gateway.modelcall), given an answer by one acquire step that holds it when it must
(gateway.holding, routing through gateway.routing), relayed from one place (gateway.relay), its client
watched throughout (gateway.exchange), and its outcome counted once (gateway.access)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from common.bodies import BodyTimeout, BodyTooLarge
from common.callers import CallerCheck, NotAllowed
from gateway.access import AccessLog, CallRecord, Outcomes, record_of
from gateway.activator import Activator
from gateway.calls import BadCall, Call, read_call
from gateway.errors import body_refusal, error_type, openai_error
from gateway.exchange import ClientGone, Exchange, Mounted
from gateway.framing import JSON_WHITESPACE, SSE, Framing, Refused
from gateway.holding import Gate
from gateway.keys import KeyRing, OverLimit, Unauthorized
from gateway.metrics import GatewayMetrics
from gateway.modelcall import ModelCall
from gateway.progress import progress_framing
from gateway.proxy import forward_headers
from gateway.relay import AnswerBrokenOff, relay
from gateway.routing import Outgoing, Router
from gateway.settings import FrontDoorSettings
from gateway.table import Allowed, ModelState, ModelTable, UnknownModel
from gateway.upstream import Upstreams
from policies import ApiKey

log = logging.getLogger("hearth.frontdoor")


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
        self.gate = Gate(table, self.router, metrics, activator, settings.max_held)
        self.outcomes = Outcomes(metrics, None)  # the access log is the app's (create_app)
        self.started = int(time.time())

    async def call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Any request that names a model: chat, completions, embeddings, responses, rerank, score, audio. A
        plain ASGI call: one path from arrival to last byte, its outcome counted once at the end."""
        exchange = Exchange(scope, receive, send)
        record = CallRecord(started=time.monotonic())
        try:
            await self._answer(exchange, record)
        except ClientGone:
            record.code, record.outcome = "client_gone", 499
        except AnswerBrokenOff:
            raise  # the server aborts the connection: the client must not take it for a whole answer
        except Exception:
            if exchange.begun:
                raise
            log.exception("the front door failed on a call to %s", record.model or "a model")
            message = "the front door failed on this request; see its log"
            await exchange.respond(openai_error(500, message, "server_error", "internal_error"))
        finally:
            record.status = exchange.status
            self.outcomes.finish(record, scope["method"], scope["path"])

    async def _answer(self, exchange: Exchange, record: CallRecord) -> None:
        try:
            key = await self._admit(exchange.headers, record)
            body = await self._read(exchange)
            state = self._lookup(body.model, key)
        except BadRequest as bad:
            await exchange.respond(bad.response)
            return
        record.model = state.key
        state.started += 1
        call = self._model_call(exchange, body, state, key, record)
        with exchange.watching():
            try:
                answer = await self.gate.acquire(call)
            except Refused as refused:
                record.code, record.outcome = refused.code, refused.status
                await self._refuse(call, refused)
                await exchange.end()
                return
            async with answer:
                check = body.stream
                if exchange.begun and call.framing is not None:
                    record.outcome = answer.response.status_code  # the 200 sent says nothing of the answer
                    check = call.framing.events
                    ready = call.framing.ready(call.waited())
                    if ready and answer.response.status_code == 200:
                        await exchange.write(ready)
                histogram = self.metrics.first_byte.labels(state.key)

                def first() -> None:
                    if answer.turn is not None:
                        answer.turn.started()  # the window grows as answers start (gateway.wake)
                    histogram.observe(time.monotonic() - call.arrived)

                record.tail = await relay(exchange, answer, check=check, first=first)
        await exchange.end()

    @staticmethod
    async def _refuse(call: ModelCall, refused: Refused) -> None:
        if call.exchange.begun:  # a held answer began as a 200: the error is in its words
            assert call.framing is not None
            await call.exchange.write(call.framing.error(refused))
            return
        final = refused.retry_after is None  # a failure that will not heal by itself: clients must not retry
        kind = error_type(refused.status)
        await call.exchange.respond(
            openai_error(refused.status, refused.message, kind, refused.code, refused.retry_after, final=final)
        )

    def _model_call(
        self, exchange: Exchange, body: Call, state: ModelState, key: ApiKey | None, record: CallRecord
    ) -> ModelCall:
        headers = forward_headers(exchange.headers.items())
        if key is not None:  # the model's server never sees a client's key
            headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
        # The runtime serves the model under its served name.
        outgoing = Outgoing(exchange.path, body.renamed(state.served_name), headers)
        scale = state.scale
        framing: Framing | None = None
        if body.stream:
            framing = SSE
            if scale.cold_start_progress and exchange.path.endswith("/chat/completions"):
                framing = progress_framing(state, body.model)
        elif scale.json_keepalive:
            framing = JSON_WHITESPACE
        arrived = record.started
        deadline = arrived + scale.activation_timeout
        return ModelCall(exchange, body, state, key, outgoing, arrived, deadline, framing, record)

    async def _admit(self, headers: Headers, record: CallRecord) -> ApiKey | None:
        """The caller's key, counted against its limits (its place released when the answer ends); None
        when keys are off. BadRequest with 401 or 429 otherwise."""
        key = await self._authenticate(headers, record)
        if key is None:
            return None
        try:
            release = self.keys.admit(key) if self.keys is not None else None
        except OverLimit as over:  # counted by key in hearth_gateway_key_requests_total{code="429"}
            raise BadRequest(
                openai_error(429, over.message, "rate_limit_exceeded", over.code, over.retry_after)
            ) from None
        if release is not None:
            record.releases.append(release)  # given back when the answer ends (gateway.access)
        return key

    async def _authenticate(self, headers: Headers, record: CallRecord | None) -> ApiKey | None:
        if self.keys is None:
            return None
        try:
            # Two credentials (two Authorization headers, or one beside an api-key) were judged by the
            # first, while a proxy in front may have checked the other: one request, one credential.
            if sum(len(headers.getlist(name)) for name in CREDENTIAL_HEADERS) > 1:
                raise Unauthorized("ambiguous")
            try:
                key = self.keys.authenticate(headers)
            except Unauthorized as unknown:
                if unknown.reason != "invalid" or self.keys_settle is None:
                    raise
                await self.keys_settle(KEYS_SETTLE_SECONDS)  # a namespace's keys may be arriving
                key = self.keys.authenticate(headers)
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
        if record is not None:  # the access log and the key's metrics name it (never the key itself)
            record.key = key.name
        return key

    async def _read(self, exchange: Exchange) -> Call:
        """The call the body makes (gateway.calls), or BadRequest with the client's error."""
        settings = self.settings
        try:
            body = await exchange.read_body(settings.max_body_bytes, settings.body_timeout)
        except (BodyTimeout, BodyTooLarge) as refused:
            raise BadRequest(body_refusal(refused, settings.max_body_bytes, settings.body_timeout)) from None
        try:
            return read_call(body, exchange.headers.get("content-type"))
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

    # --- the rest of the API -------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        """The models this caller's key may call, in OpenAI's list shape."""
        try:
            key = await self._authenticate(request.headers, record_of(request))
        except BadRequest as bad:
            return bad.response
        allowed = key.may_call if key is not None else None
        data = [self._model(s, allowed) for s in sorted(self.table.visible(allowed), key=lambda s: s.key)]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        """GET /v1/models/{id}: one model, as the list shows it."""
        try:
            key = await self._authenticate(request.headers, record_of(request))
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
) -> ASGIApp:
    """The front door's app. A call to a model goes straight to `FrontDoor.call` (no router, no middleware
    on its path: it records itself); the other routes are a Starlette app whose `/v1/` answers are recorded
    by gateway.access. `access_log` gets one line per call either way."""
    door.outcomes.logger = access_log
    call = Mounted(door.call)
    routes = [
        *(Route(path, call, methods=["POST"]) for path in MODEL_ROUTES),
        Route("/v1/models", door.models, methods=["GET"]),
        Route("/v1/models/{model:path}", door.model, methods=["GET"]),
        Route("/demand", door.demand, methods=["GET"]),
        *(extra_routes or []),
    ]
    handlers = {404: _unknown, 405: _unknown, 500: _unknown}
    recorded = Middleware(AccessLog, outcomes=door.outcomes)
    rest = Starlette(routes=routes, exception_handlers=handlers, middleware=[recorded])
    model_routes = frozenset(MODEL_ROUTES)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in model_routes:
            await door.call(scope, receive, send)
        else:
            await rest(scope, receive, send)

    return app
