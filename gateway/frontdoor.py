"""The front door: OpenAI-compatible, routes by model to ready pods (least in-flight), holds requests while
a model starts from zero (bounded per model and in total), keeps streaming clients alive with SSE comment
heartbeats, and reports demand. Errors always reach clients OpenAI-shaped: a JSON body with a status when
nothing was sent yet, an SSE `data: {"error": ...}` event once a 200 stream has begun."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import openai_error
from gateway.metrics import GatewayMetrics
from gateway.proxy import forward_headers
from gateway.settings import FrontDoorSettings
from gateway.streaming import PromptStreamingResponse
from gateway.table import AmbiguousModel, Backend, ModelState, ModelTable, UnknownModel
from gateway.upstream import UpstreamError, UpstreamResponse, Upstreams
from hearth.bodies import BodyTooLarge, read_bounded

log = logging.getLogger("hearth.frontdoor")
DRAINING_HEADER = "x-hearth-draining"
T = TypeVar("T")


class Held(Exception):
    """A held request ends without a backend: `status` and `code` say why (timeout, start failure)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Upstream:
    backend: Backend
    response: UpstreamResponse


def sse_error(message: str, kind: str, code: str) -> bytes:
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def until_disconnect(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class ClientGone(Exception):
    """The client disconnected while its request waited."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it (and raising ClientGone) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):  # the client is gone; nothing to report
        await task
    raise ClientGone


class Activator:
    """Tells the scaler at once that a model at zero has demand (a push, not the next poll).

    The push goes to every scaler it knows of (only the leader accepts; standbys answer 409) and is retried
    with backoff until one accepts it or `retry_for` seconds pass (a leader election or a scaler that has
    not seen the Deployment yet is a matter of seconds). One push per model is in flight at a time.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        scalers: Callable[[], list[str]],
        metrics: GatewayMetrics,
        retry_for: float = 30.0,
    ) -> None:
        self._client = client
        self._scalers = scalers
        self._metrics = metrics
        self._retry_for = retry_for
        self._pending: dict[str, asyncio.Task[None]] = {}

    def poke(self, key: str) -> None:
        if key in self._pending or not self._scalers():
            return
        self._pending[key] = asyncio.ensure_future(self._push(key))

    async def settle(self) -> None:
        """Wait for the pushes in flight (each ends accepted or given up on within `retry_for`)."""
        await asyncio.gather(*list(self._pending.values()))

    async def _post(self, url: str, key: str) -> int:
        try:
            response = await self._client.post(f"{url}/activate", json={"model": key}, timeout=2.0)
        except httpx.HTTPError as exc:
            log.info("activation push of %s to %s failed: %s", key, url, exc)
            return 0
        return response.status_code

    async def _push(self, key: str) -> None:
        started = time.monotonic()
        deadline = started + self._retry_for
        delay = 0.1
        try:
            while True:
                urls = self._scalers()
                statuses = await asyncio.gather(*(self._post(u, key) for u in urls))
                if 202 in statuses:
                    self._metrics.activation_pushes.labels(key, "accepted").inc()
                    self._metrics.activation_push.labels(key).observe(time.monotonic() - started)
                    return
                if time.monotonic() + delay > deadline:
                    self._metrics.activation_pushes.labels(key, "unacknowledged").inc()
                    log.warning("no scaler accepted the activation of %s (answers %s); its tick will", key, statuses)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        finally:
            self._pending.pop(key, None)


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
        self.upstreams = upstreams
        self.metrics = metrics
        self.activator = activator

    # --- upstream ----------------------------------------------------------------------------------
    async def _try_backends(self, state: ModelState, body: bytes, request: Request, path: str) -> Upstream | None:
        """The least-loaded ready backend that answers; one that cannot connect or is draining is skipped."""
        tried: set[str] = set()
        while len(tried) <= self.settings.retries:
            backend = self.table.pick(state, tried)
            if backend is None:
                return None
            tried.add(backend.url)
            backend.in_flight += 1
            try:
                headers = forward_headers(request.headers.items())
                response = await self.upstreams.open("POST", backend.url + path, body, headers)
            except UpstreamError as exc:
                backend.in_flight -= 1
                log.info("backend %s of %s failed before any byte (%s); trying another", backend.name, state.key, exc)
                continue
            except BaseException:
                backend.in_flight -= 1
                raise
            if response.status_code == 503 and response.headers.get(DRAINING_HEADER):
                backend.in_flight -= 1
                await response.aclose()
                continue
            return Upstream(backend, response)
        return None

    async def _hold(
        self,
        state: ModelState,
        body: bytes,
        request: Request,
        path: str,
        deadline: float,
        heartbeat: Callable[[float], None] | None = None,
    ) -> Upstream:
        """Wait for a backend until `deadline`; `heartbeat(waited)` is called every heartbeat interval."""
        started = time.monotonic()
        while True:
            if state.failure:
                raise Held(503, "model_start_failed", f"model {state.key} failed to start: {state.failure}")
            upstream = await self._try_backends(state, body, request, path)
            if upstream is not None:
                return upstream
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Held(
                    504,
                    "activation_timeout",
                    f"model {state.key} did not become ready within {state.scale.activation_timeout:g}s",
                )
            changed = state.changed
            wait = min(remaining, state.scale.heartbeat_interval) if heartbeat else remaining
            try:
                await asyncio.wait_for(changed.wait(), wait)
            except TimeoutError:
                if heartbeat is not None and time.monotonic() < deadline:
                    heartbeat(time.monotonic() - started)

    # --- requests ----------------------------------------------------------------------------------
    async def completions(self, request: Request) -> Response:
        arrived = time.monotonic()
        path = request.url.path
        try:
            async with asyncio.timeout(self.settings.body_timeout):
                body = await read_bounded(request, self.settings.max_body_bytes)
        except TimeoutError:
            return openai_error(
                408,
                f"request body not received within {self.settings.body_timeout:g}s",
                "invalid_request_error",
                "body_timeout",
            )
        except BodyTooLarge:
            return openai_error(
                413,
                f"request body exceeds {self.settings.max_body_bytes} bytes",
                "invalid_request_error",
                "body_too_large",
            )
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return openai_error(400, "request body is not valid JSON", "invalid_request_error", "invalid_json")
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
            return openai_error(
                400,
                "request body must be a JSON object with a string `model`",
                "invalid_request_error",
                "missing_model",
            )
        try:
            state = self.table.lookup(payload["model"])
        except UnknownModel:
            known = ", ".join(sorted(s.key for s in self.table.models.values())) or "none"
            return openai_error(
                404,
                f"The model `{payload['model']}` does not exist; known: {known}",
                "invalid_request_error",
                "model_not_found",
            )
        except AmbiguousModel as exc:
            return openai_error(
                400,
                f"The model `{payload['model']}` is ambiguous; write namespace/name: {exc}",
                "invalid_request_error",
                "model_ambiguous",
            )
        if payload["model"] != state.served_name:
            payload["model"] = state.served_name
            body = orjson.dumps(payload)
        stream = bool(payload.get("stream"))
        try:
            # A streaming answer's head comes at once; a whole answer's only when it is done, so only then
            # is the wait raced against the client leaving (which costs two tasks per request).
            attempt = self._try_backends(state, body, request, path)
            upstream = await attempt if stream else await unless_disconnected(request, attempt)
            if upstream is not None:
                self.metrics.routing.labels(state.key).observe(time.monotonic() - arrived)
                return self._relay(state, upstream, arrived, stream=stream)
            return await self._activate(state, body, request, path, arrived, stream)
        except ClientGone:
            self.metrics.rejections.labels(state.key, "client_gone").inc()
            return Response(status_code=499)

    async def _activate(
        self, state: ModelState, body: bytes, request: Request, path: str, arrived: float, stream: bool
    ) -> Response:
        self.activator.poke(state.key)
        scale = state.scale
        if state.failure:
            return self._refuse(
                state, 503, "model_start_failed", f"model {state.key} failed to start: {state.failure}", 30
            )
        if scale.cold_start == "reject":
            return self._refuse(
                state, 503, "model_starting", f"model {state.key} is starting from zero; retry shortly", 30
            )
        if state.held >= scale.queue_size or self.table.held_total >= self.settings.max_held_total:
            return self._refuse(state, 429, "queue_full", f"too many requests are waiting for model {state.key}", 5)
        deadline = arrived + scale.activation_timeout
        self._enter_hold(state)
        if stream:
            return PromptStreamingResponse(
                self._held_stream(state, body, request, path, arrived, deadline),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            upstream = await unless_disconnected(request, self._hold(state, body, request, path, deadline))
        except Held as held:
            return self._refuse(state, held.status, held.code, held.message, 30)
        finally:
            self._leave_hold(state, arrived)
        return self._relay(state, upstream, arrived, stream=False)

    def _enter_hold(self, state: ModelState) -> None:
        state.held += 1
        self.table.held_total += 1
        self.metrics.held.labels(state.key).inc()

    def _leave_hold(self, state: ModelState, arrived: float) -> None:
        state.held -= 1
        self.table.held_total -= 1
        self.metrics.held.labels(state.key).dec()
        self.metrics.activation_wait.labels(state.key).observe(time.monotonic() - arrived)

    async def _held_stream(
        self, state: ModelState, body: bytes, request: Request, path: str, arrived: float, deadline: float
    ) -> AsyncIterator[bytes]:
        beats: asyncio.Queue[float] = asyncio.Queue(maxsize=1)

        def beat(waited: float) -> None:
            if beats.empty():
                beats.put_nowait(waited)

        hold = asyncio.ensure_future(self._hold(state, body, request, path, deadline, heartbeat=beat))
        next_beat: asyncio.Future[float] | None = None
        released = relayed = False
        try:
            yield f": hearth: model {state.key} is starting; holding this request\n\n".encode()
            while not hold.done():
                next_beat = asyncio.ensure_future(beats.get())
                await asyncio.wait({hold, next_beat}, return_when=asyncio.FIRST_COMPLETED)
                if next_beat.done():
                    yield f": hearth: still starting ({next_beat.result():.0f}s)\n\n".encode()
                else:
                    next_beat.cancel()
            self._leave_hold(state, arrived)
            released = True
            try:
                upstream = hold.result()
            except Held as held:
                self.metrics.rejections.labels(state.key, held.code).inc()
                self.metrics.requests.labels(state.key, str(held.status)).inc()
                yield sse_error(held.message, "service_unavailable", held.code)
                return
            relayed = True
            async for chunk in self._stream_upstream(state, upstream, arrived):
                yield chunk
        finally:
            if next_beat is not None:
                next_beat.cancel()
            if not hold.done():
                hold.cancel()
                self.metrics.rejections.labels(state.key, "client_gone").inc()
            elif not relayed and not hold.cancelled() and hold.exception() is None:
                # A backend was found just as the client left: give its request back.
                found = hold.result()
                found.backend.in_flight -= 1
                await found.response.aclose()
            if not released:
                self._leave_hold(state, arrived)

    async def _body(
        self, state: ModelState, upstream: Upstream, arrived: float, *, stream: bool
    ) -> AsyncIterator[bytes]:
        """The upstream answer's bytes; a stream that breaks off ends with an SSE error event. Ends the
        flight, however the relay ends (the client leaving included)."""
        response = upstream.response
        first = True
        try:
            async for chunk in response.aiter_raw():
                if first:
                    self.metrics.first_byte.labels(state.key).observe(time.monotonic() - arrived)
                    first = False
                yield chunk
        except UpstreamError as exc:
            if stream:
                yield sse_error(
                    f"the model's stream broke off: {type(exc).__name__}", "upstream_error", "stream_broken"
                )
        finally:
            await response.aclose()
            self._end_flight(state, upstream.backend)

    async def _stream_upstream(self, state: ModelState, upstream: Upstream, arrived: float) -> AsyncIterator[bytes]:
        """Relay an upstream answer into an already committed 200 stream: an error answer becomes an event."""
        response = upstream.response
        self._start_flight(state)
        self.metrics.requests.labels(state.key, str(response.status_code)).inc()
        if response.status_code != 200:
            try:
                detail = (await response.aread()).decode(errors="replace")
            finally:
                await response.aclose()
                self._end_flight(state, upstream.backend)
            message = _error_message(detail) or f"the model answered HTTP {response.status_code}"
            yield sse_error(message, "upstream_error", f"upstream_{response.status_code}")
            return
        async for chunk in self._body(state, upstream, arrived, stream=True):
            yield chunk

    def _relay(self, state: ModelState, upstream: Upstream, arrived: float, *, stream: bool) -> Response:
        """Pass an upstream answer through with its own status and headers (nothing was sent yet)."""
        response = upstream.response
        self._start_flight(state)
        self.metrics.requests.labels(state.key, str(response.status_code)).inc()
        return PromptStreamingResponse(
            self._body(state, upstream, arrived, stream=stream),
            status_code=response.status_code,
            headers=forward_headers(response.headers.items()),
        )

    def _start_flight(self, state: ModelState) -> None:
        state.in_flight += 1
        self.metrics.in_flight.labels(state.key).inc()

    def _end_flight(self, state: ModelState, backend: Backend) -> None:
        state.in_flight -= 1
        backend.in_flight -= 1
        self.metrics.in_flight.labels(state.key).dec()

    def _refuse(self, state: ModelState, status: int, code: str, message: str, retry_after: float) -> Response:
        self.metrics.rejections.labels(state.key, code).inc()
        self.metrics.requests.labels(state.key, str(status)).inc()
        kind = "rate_limit_exceeded" if status == 429 else "service_unavailable"
        return openai_error(status, message, kind, code, retry_after)

    # --- the rest of the API -------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        created = int(time.time())
        data = [
            {
                "id": s.name if self._unique(s) else s.key,
                "object": "model",
                "created": created,
                "owned_by": "hearth",
                "hearth": {"deployment": s.key, "readyPods": len(s.backends)},
            }
            for s in sorted(self.table.models.values(), key=lambda s: s.key)
        ]
        return JSONResponse({"object": "list", "data": data})

    def _unique(self, state: ModelState) -> bool:
        return sum(1 for s in self.table.models.values() if s.name == state.name) == 1

    async def demand(self, request: Request) -> Response:
        return JSONResponse({"models": self.table.demand(), "heldTotal": self.table.held_total})


def _error_message(detail: str) -> str | None:
    try:
        data: Any = json.loads(detail)
    except ValueError:
        return detail.strip()[:500] or None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return None


def create_app(door: FrontDoor, extra_routes: list[Route] | None = None) -> Starlette:
    routes = [
        Route("/v1/chat/completions", door.completions, methods=["POST"]),
        Route("/v1/completions", door.completions, methods=["POST"]),
        Route("/v1/models", door.models, methods=["GET"]),
        Route("/demand", door.demand, methods=["GET"]),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes)
