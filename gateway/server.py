"""Serving the front door: uvicorn with a header read timeout, one shared httpx client, discovery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from common.callers import CallerCheck, CallerToken, service_account
from common.http import bounded_head_protocol
from common.informer import InformerMetrics
from common.kube import own_namespace
from common.kubeapi import KubeAPI
from common.names import NamesWatch
from common.peers import Peers
from gateway.access import access_logger
from gateway.activator import Activator
from gateway.discovery import KubeDiscovery, StaticUpstreams
from gateway.frontdoor import FrontDoor, create_app
from gateway.keys import KeyRing, KeyWatch, keys_from_file
from gateway.metrics import GatewayMetrics
from gateway.relay import quiet_aborts
from gateway.settings import FrontDoorSettings
from gateway.table import ModelTable
from gateway.upstream import Upstreams, UpstreamTimeouts

log = logging.getLogger("hearth.frontdoor")


def _why_open(settings: FrontDoorSettings) -> str:
    if settings.trusted_network:
        return "--trusted-network"
    return "keys are read from Secrets: only with --kubeconfig or --in-cluster"


def http_client(settings: FrontDoorSettings) -> httpx.AsyncClient:
    """For the low-rate calls: health checks of fixed upstreams and activation pushes to the scaler.
    (Relayed requests go through `Upstreams`, whose reads wait up to the idle-stream timeout.)"""
    timeout = httpx.Timeout(connect=settings.connect_timeout, read=10.0, write=10.0, pool=settings.connect_timeout)
    return httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=64))


async def serve(settings: FrontDoorSettings) -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    table = ModelTable()
    async with http_client(settings) as client, contextlib.AsyncExitStack() as stack:
        timeouts = UpstreamTimeouts(connect=settings.connect_timeout, idle=settings.idle_stream_timeout)
        upstreams = await stack.enter_async_context(Upstreams(timeouts))
        scaler_urls = [settings.scaler_url] if settings.scaler_url else []
        scalers = Peers(scaler_urls)
        background: list[asyncio.Task[Any]] = []
        discovery: KubeDiscovery | None = None
        api: KubeAPI | None = None
        watch_metrics: InformerMetrics | None = None
        if settings.upstreams:
            static = StaticUpstreams(
                table,
                settings.upstreams,
                settings.defaults,
                client,
                settings.health_interval,
                settings.held_health_interval,
            )
            background.append(asyncio.create_task(static.run()))
        if settings.kubeconfig is not None or settings.in_cluster:
            api = KubeAPI.connect(str(settings.kubeconfig) if settings.kubeconfig else None, settings.in_cluster)
            stack.push_async_callback(api.aclose)
            watch_metrics = InformerMetrics(registry)
            discovery = KubeDiscovery(table, api, settings.namespaces, metrics.forget, watch_metrics)
            scalers = Peers(
                scaler_urls,
                api,
                settings.scaler_selector,
                settings.scaler_namespace,
                settings.scaler_port,
                watch_metrics,
            )
            names = NamesWatch(api, settings.names_namespace or own_namespace(), watch_metrics, table.record_names)
            background += [
                asyncio.create_task(discovery.run()),
                asyncio.create_task(scalers.run()),
                asyncio.create_task(names.run()),
            ]
        token = CallerToken(settings.token_file) if settings.token_file else None
        activator = Activator(client, scalers.urls, metrics, settings.activation_retry_for, token)
        keys: KeyRing | None = None
        internal: CallerCheck | None = None
        key_watch: KeyWatch | None = None
        if api is not None:
            if not settings.trusted_network:
                keys = KeyRing(on_removed=metrics.forget_key)
                key_watch = KeyWatch(keys, api, settings.namespaces, watch_metrics, _namespaces_of(table, discovery))
                background.append(asyncio.create_task(key_watch.run()))
            if settings.internal_callers:
                callers = frozenset(service_account(ref) for ref in settings.internal_callers)
                internal = CallerCheck(api, callers)
        if settings.api_keys is not None:
            keys = keys or KeyRing(on_removed=metrics.forget_key)
            keys.replace(keys_from_file(settings.api_keys), source=str(settings.api_keys))
        if keys is None:
            log.warning("no API keys: every caller may call every model (%s)", _why_open(settings))
        door = FrontDoor(settings, table, upstreams, metrics, activator, keys, internal)
        if key_watch is not None:
            door.keys_settle = key_watch.settle

        async def healthz(request: Request) -> Response:
            """200 once the front door has learned its models."""
            if discovery is not None and not discovery.synced:
                return Response("discovering models", status_code=503)
            if key_watch is not None and not key_watch.synced:
                return Response("reading API keys", status_code=503)
            return Response("ok")

        async def prometheus(request: Request) -> Response:
            """Prometheus metrics (on `--metrics-port` when set; the API port then answers 404)."""
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

        own = [Route("/healthz", healthz), Route("/metrics", prometheus)]
        extra = own if not settings.metrics_port else [Route("/healthz", healthz)]
        public = create_app(door, extra, None if settings.no_access_log else access_logger())
        app = by_port(public, Starlette(routes=own), settings.metrics_port) if settings.metrics_port else public
        server_config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,
            http=bounded_head_protocol(settings.header_timeout),
            timeout_keep_alive=75,
            # A rolling upgrade of the front doors must not cut the streams they relay: new connections stop
            # at SIGTERM, open ones run to their end (it once was 10 s, which cut every longer answer).
            timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
            backlog=4096,
        )
        quiet_aborts()  # after the Config, which sets up uvicorn's loggers
        sockets = [server_config.bind_socket()]
        if settings.metrics_port:
            sockets.append(listening_socket(settings.host, settings.metrics_port))
        try:
            await uvicorn.Server(server_config).serve(sockets=sockets)
        finally:
            for task in background:
                task.cancel()


def by_port(api: ASGIApp, metrics: ASGIApp, metrics_port: int) -> ASGIApp:
    """One server, two ports: requests that arrive on `metrics_port` reach `metrics` (its /metrics and
    /healthz, nothing else), all others the API (which has no /metrics). Lifespan events go to the API."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") or (None, None)
        if scope["type"] == "http" and server[1] == metrics_port:
            await metrics(scope, receive, send)
        else:
            await api(scope, receive, send)

    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6), for uvicorn's serve(sockets=...)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _namespaces_of(table: ModelTable, discovery: KubeDiscovery | None) -> Callable[[], set[str] | None]:
    """The namespaces of the models the front door knows; None until its discovery has listed them."""

    def known() -> set[str] | None:
        if discovery is None or not discovery.synced:
            return None
        return {state.namespace for state in table.models.values()}

    return known
