"""`hearth scaler`: the leader-elected loop and its small HTTP face (/activate, /status, /healthz, /metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common.accelerators import AcceleratorView
from common.callers import CallerCheck, CallerToken, NotAllowed, service_account
from common.informer import InformerMetrics
from common.kube import own_namespace
from common.kubeapi import KubeAPI
from common.peers import Peers
from scaler.anticipate import Anticipator
from scaler.ceilings import PriorityCeilings
from scaler.demand import DemandCollector
from scaler.kube import KubeWriter
from scaler.leader import LeaderElector, LeaseApi
from scaler.llmservices import LLMServiceController
from scaler.loop import Scaler
from scaler.metrics import ScalerMetrics
from scaler.names import NameRecord
from scaler.prewarm import Prewarmer
from scaler.room import RoomMaker
from scaler.settings import ScalerSettings
from scaler.view import ClusterView

log = logging.getLogger("hearth.scaler")


def create_app(scaler: Scaler, registry: CollectorRegistry, callers: CallerCheck | None = None) -> Starlette:
    """`callers`: who may push to /activate (None: anyone)."""
    pending: set[asyncio.Task[None]] = set()

    async def activate(request: Request) -> Response:
        """A front door's push for a model at zero: one replica at once (callers may be checked by token review)."""
        pushed_at = scaler.clock()
        if callers is not None:
            try:
                await callers.check(request.headers)
            except NotAllowed as refused:
                return JSONResponse({"error": refused.message}, status_code=refused.status)
        try:
            body = await request.json()
            key = str(body["model"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"model": "namespace/name"}'}, status_code=400)
        if not scaler.elector.leading():
            return JSONResponse(
                {"error": "not the leader; the leader's next tick will see the demand"}, status_code=409
            )
        if key not in scaler.view.deployments:
            return JSONResponse({"error": f"no opted-in Deployment {key}"}, status_code=404)
        task = asyncio.ensure_future(scaler.activate(key, pushed_at))
        pending.add(task)  # keep a reference until done (the loop holds only a weak one)
        task.add_done_callback(pending.discard)
        return JSONResponse({"accepted": key}, status_code=202)

    async def status(request: Request) -> Response:
        """Whether this replica leads, and each model's phase, demand and runtime."""
        models = {
            key: {"phase": m.phase, "demand": m.demand, "runtime": m.runtime}
            for key, m in sorted(scaler.models.items())
        }
        return JSONResponse({"identity": scaler.elector.identity, "leader": scaler.elector.leading(), "models": models})

    async def healthz(request: Request) -> Response:
        """200 (the body says whether its informers have synced)."""
        return Response("ok" if scaler.view.synced else "syncing", status_code=200)

    async def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/activate", activate, methods=["POST"]),
            Route("/status", status),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
        ]
    )


async def serve(settings: ScalerSettings) -> None:
    registry = CollectorRegistry()
    metrics = ScalerMetrics(registry)
    watch_metrics = InformerMetrics(registry)
    api = KubeAPI.connect(str(settings.kubeconfig) if settings.kubeconfig else None, settings.in_cluster or None)
    view = ClusterView(api, watch_metrics)
    accelerators = AcceleratorView(api, watch_metrics)
    elector = LeaderElector(LeaseApi(api), settings.identity, settings.lease)
    front_doors = Peers(
        settings.gateway_urls,
        api,
        settings.gateway_selector,
        settings.gateway_namespace,
        settings.gateway_port,
        watch_metrics,
        leaving_too=True,  # a draining front door's held requests are demand until it is gone
    )
    callers = None
    if settings.internal_callers:
        callers = CallerCheck(api, frozenset(service_account(ref) for ref in settings.internal_callers))
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=256)) as client:
        writer = KubeWriter(api, settings.identity)
        prewarmer = Prewarmer(api, writer, metrics, settings.prewarm_image)
        ceilings = PriorityCeilings(api, settings.default_max_priority, watch_metrics)
        scaler = Scaler(
            view,
            DemandCollector(
                client,
                front_doors.urls,
                require_front_door=bool(settings.gateway_selector),
                token=CallerToken(settings.token_file) if settings.token_file else None,
                leaving=front_doors.leaving,
            ),
            writer,
            elector,
            metrics,
            names=NameRecord(api, settings.names_namespace or own_namespace()),
            prewarmer=prewarmer,
            accelerators=accelerators,
            room=RoomMaker(
                writer,
                metrics,
                settings.rules,
                time.monotonic,
                prewarmer.runtimes,
                settings.vendor_fallback_after,
                ceilings,
            ),
            anticipator=Anticipator(settings.anticipations_per_day),
        )

        llmservices = LLMServiceController(api, lambda: view.deployments, prewarmer.runtimes, metrics, watch_metrics)

        async def compile_llmservices() -> None:
            while True:
                try:
                    if elector.leading() and view.synced:
                        await llmservices.sync()
                except Exception as exc:
                    metrics.failures.labels("llmservice").inc()
                    log.warning("LLMService pass failed: %s", exc)
                await asyncio.sleep(settings.llmservice_interval)

        async def ticks() -> None:
            while True:
                started = time.monotonic()
                try:
                    await scaler.tick()
                except Exception as exc:
                    metrics.failures.labels("tick").inc()
                    log.warning("tick failed: %s", exc)
                await asyncio.sleep(max(0.05, settings.tick - (time.monotonic() - started)))

        async def prewarms() -> None:
            while True:
                try:
                    if elector.leading() and view.synced:
                        await prewarmer.sync(view.deployments)
                except Exception as exc:
                    metrics.failures.labels("prewarm").inc()
                    log.warning("prewarm pass failed: %s", exc)
                await asyncio.sleep(settings.prewarm_interval)

        loops = (
            view.run(),
            accelerators.run(),
            front_doors.run(),
            elector.run(),
            llmservices.run(),
            ceilings.run(),
            ticks(),
            prewarms(),
            compile_llmservices(),
        )
        tasks = [asyncio.create_task(c) for c in loops]
        config = uvicorn.Config(
            create_app(scaler, registry, callers),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,
        )
        try:
            await uvicorn.Server(config).serve()
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(elector.release(), timeout=3)
            await api.aclose()
