"""The HTTP adapter: FastAPI routes that read a bounded body, call the admission core and answer JSON."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.bodies import BodyTimeout, BodyTooLarge, read_bounded
from policies import Capacity, InferenceRuntime, RenderSettings
from webhook.admission import (
    Handler,
    MalformedReview,
    Review,
    check_deployment,
    check_llmservice,
    check_runtime,
    mutate_deployment,
    mutate_pod,
    review,
)
from webhook.metrics import WebhookMetrics
from webhook.runtimes import RuntimeStore

log = logging.getLogger("hearth.webhook")
ENDPOINTS: dict[str, Handler] = {
    "/mutate/pods": mutate_pod,
    "/mutate/deployments": mutate_deployment,
    "/validate/deployments": check_deployment,
    "/validate/inferenceruntimes": check_runtime,
    "/validate/llmservices": check_llmservice,
}


def _error(status: int, message: str) -> Response:
    body = json.dumps({"error": {"code": status, "message": message}})
    return Response(body, status_code=status, media_type="application/json")


def create_app(
    store: RuntimeStore,
    render: RenderSettings,
    metrics: WebhookMetrics,
    max_body_bytes: int,
    body_timeout: float = 10.0,
    names: Callable[[], Mapping[str, str]] = dict,
    capacity: Callable[[], Capacity | None] = lambda: None,
) -> FastAPI:
    app = FastAPI(title="Hearth admission webhook", docs_url=None, redoc_url=None, openapi_url=None)

    def route(path: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        reviews = {
            result: metrics.reviews.labels(path, result)
            for result in ("allowed", "patched", "denied", "malformed", "too_large", "too_slow")
        }
        latency = metrics.latency.labels(path)

        async def endpoint(request: Request) -> Response:
            try:
                body = await read_bounded(request, max_body_bytes, body_timeout)
            except BodyTimeout:
                reviews["too_slow"].inc()
                return _error(408, f"AdmissionReview body not received within {body_timeout:g}s")
            except BodyTooLarge:
                reviews["too_large"].inc()
                return _error(413, f"AdmissionReview body exceeds {max_body_bytes} bytes")
            started = time.perf_counter()
            try:
                result = review(body, handler, store.snapshot(), render)
            except MalformedReview as exc:
                reviews["malformed"].inc()
                return _error(400, f"malformed AdmissionReview: {exc}")
            response = result["response"]
            outcome = "denied" if not response["allowed"] else "patched" if "patch" in response else "allowed"
            reviews[outcome].inc()
            latency.observe(time.perf_counter() - started)
            if outcome == "denied":
                log.info("%s denied %s: %s", path, response["uid"], response["status"]["message"])
            return Response(orjson.dumps(result), media_type="application/json")

        return endpoint

    def check_deployment_names(
        request: Mapping[str, Any], runtimes: Sequence[InferenceRuntime], settings: RenderSettings
    ) -> Review:
        return check_deployment(request, runtimes, settings, names())

    def render_pod_by_capacity(
        request: Mapping[str, Any], runtimes: Sequence[InferenceRuntime], settings: RenderSettings
    ) -> Review:
        return mutate_pod(request, runtimes, settings, capacity())

    handlers = {
        **ENDPOINTS,
        "/validate/deployments": check_deployment_names,
        "/mutate/pods": render_pod_by_capacity,
    }
    for path, handler in handlers.items():
        app.add_api_route(path, route(path, handler), methods=["POST"], include_in_schema=False)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        """200 while the webhook serves."""
        return Response("ok", media_type="text/plain")

    @app.get("/debug/runtimes", include_in_schema=False)
    async def runtimes() -> Response:
        """The InferenceRuntimes this replica renders from, with their version stamps."""
        known = [
            {"name": r.name, "vendor": r.spec.vendor, "priority": r.spec.priority, "stamp": r.stamp}
            for r in store.snapshot()
        ]
        return Response(json.dumps(known), media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        metrics.runtimes.set(len(store.snapshot()))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
