"""The scaler loop: watch opted-in Deployments and their pods, collect demand from every gateway front
door and sidecar each tick (and at once on a front door's activation push), decide, and write replicas
through the scale subresource, while holding the lease. Publishes the phase label, a status annotation
and Kubernetes Events."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.discovery import backend_of, scale_of
from hearth.kube import Informer
from policies import ENABLED_LABEL, RENDERED, ScaleSpec
from policies.annotations import PHASE_LABEL, STATUS
from scaler.decision import Decision, Memory, Observation, decide
from scaler.kube import KubeWriter
from scaler.leader import LeaderElector
from scaler.metrics import ScalerMetrics
from scaler.phase import failure, phase

log = logging.getLogger("hearth.scaler")
STATUS_EVERY = 15.0  # seconds between status-annotation refreshes when only the demand moved


@dataclass
class ModelMemory:
    memory: Memory = field(default_factory=Memory)
    written: tuple[int, float] | None = None  # replicas we wrote and when (until the watch catches up)
    phase: str | None = None
    status_at: float = 0.0
    demand: int = 0
    runtime: str | None = None
    last_status: dict[str, Any] | None = None


@dataclass
class Demand:
    held: int = 0
    gateway_in_flight: int = 0
    sidecar_in_flight: int = 0
    busy_pods: int = 0
    per_pod: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        # A request in flight through a front door is also in flight at its pod's sidecar: count it once.
        return self.held + max(self.gateway_in_flight, self.sidecar_in_flight)


class ClusterView:
    """Opted-in Deployments and pods, kept current by watches in threads."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.stop = threading.Event()
        self.deployments: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.synced = threading.Event()
        apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
        selector = f"{ENABLED_LABEL}=true"
        self._informers = [
            Informer(apps.list_deployment_for_all_namespaces, self._set_deployments, selector, self.stop),
            Informer(core.list_pod_for_all_namespaces, self._set_pods, selector, self.stop),
        ]
        self._seen: set[str] = set()

    def _set_deployments(self, objects: dict[str, dict[str, Any]]) -> None:
        self.deployments = objects
        self._seen.add("deployments")
        if len(self._seen) == 2:
            self.synced.set()

    def _set_pods(self, objects: dict[str, dict[str, Any]]) -> None:
        self.pods = objects
        self._seen.add("pods")
        if len(self._seen) == 2:
            self.synced.set()

    def start(self) -> None:
        for informer in self._informers:
            threading.Thread(target=informer.run, name="scaler-watch", daemon=True).start()

    def pods_of(self, key: str) -> list[dict[str, Any]]:
        from policies import deployment_name_of

        namespace, name = key.split("/", 1)
        return [
            p
            for p in self.pods.values()
            if p["metadata"].get("namespace") == namespace and deployment_name_of(p) == name
        ]


class DemandCollector:
    """Demand from every front door (their sum) and every model pod's sidecar.

    `front_doors` answers the front doors' base URLs at each call (fixed, or the pods found by label), so
    a replica that starts or goes away is counted from the next tick on. With `require_front_door`, a
    tick that finds none is not fresh: no scale-down on the word of nobody.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        front_doors: Callable[[], list[str]],
        timeout: float = 0.5,
        require_front_door: bool = False,
    ) -> None:
        self.client = client
        self.front_doors = front_doors
        self.timeout = timeout
        self.require_front_door = require_front_door

    async def _get(self, url: str) -> dict[str, Any] | None:
        try:
            response = await self.client.get(url, timeout=self.timeout)
            if response.status_code != 200:
                return None
            data: dict[str, Any] = response.json()
            return data
        except (httpx.HTTPError, ValueError):
            return None

    async def collect(self, pods_by_model: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, Demand], bool]:
        """Demand per model, and whether every source answered."""
        sidecars: list[tuple[str, str]] = []
        for key, pods in pods_by_model.items():
            for pod in pods:
                url = _sidecar_url(pod)
                if url is not None:
                    sidecars.append((key, url))
        gateway_urls = self.front_doors()
        answers = await asyncio.gather(
            *(self._get(f"{u}/demand") for u in gateway_urls), *(self._get(f"{url}/demand") for _, url in sidecars)
        )
        fresh = all(a is not None for a in answers) and (bool(gateway_urls) or not self.require_front_door)
        demand: dict[str, Demand] = {key: Demand() for key in pods_by_model}
        for answer in answers[: len(gateway_urls)]:
            for key, counts in ((answer or {}).get("models") or {}).items():
                entry = demand.setdefault(key, Demand())
                entry.held += int(counts.get("held", 0))
                entry.gateway_in_flight += int(counts.get("inFlight", 0))
        for (key, url), answer in zip(sidecars, answers[len(gateway_urls) :], strict=True):
            in_flight = int((answer or {}).get("inFlight", 0))
            entry = demand[key]
            entry.sidecar_in_flight += in_flight
            entry.per_pod[url] = in_flight
            entry.busy_pods += 1 if in_flight > 0 else 0
        return demand, fresh


def _sidecar_url(pod: dict[str, Any]) -> str | None:
    ip = (pod.get("status") or {}).get("podIP")
    try:
        stamp = json.loads(((pod.get("metadata") or {}).get("annotations") or {}).get(RENDERED, ""))
    except ValueError:
        return None
    if not ip or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    return f"http://{ip}:{stamp['sidecarPort']}"


class Scaler:
    def __init__(
        self,
        view: ClusterView,
        collector: DemandCollector,
        writer: KubeWriter,
        elector: LeaderElector,
        metrics: ScalerMetrics,
        clock: Any = time.monotonic,
    ) -> None:
        self.view = view
        self.collector = collector
        self.writer = writer
        self.elector = elector
        self.metrics = metrics
        self.clock = clock
        self.models: dict[str, ModelMemory] = {}
        self._lock = asyncio.Lock()

    async def tick(self) -> None:
        """One pass over every model."""
        leading = self.elector.leading()
        self.metrics.leader.set(1 if leading else 0)
        if not leading or not self.view.synced.is_set():
            return
        async with self._lock:
            started = self.clock()
            deployments = dict(self.view.deployments)
            pods = {key: self.view.pods_of(key) for key in deployments}
            demand, fresh = await self.collector.collect(pods)
            for key, deployment in deployments.items():
                try:
                    await self._one(key, deployment, pods[key], demand.get(key, Demand()), fresh)
                except Exception as exc:
                    self.metrics.failures.labels("model").inc()
                    log.warning("scaling %s failed: %s", key, exc)
            for gone in [k for k in self.models if k not in self.view.deployments]:
                del self.models[gone]
                self.metrics.forget(gone)
            self.metrics.tick.observe(self.clock() - started)

    async def activate(self, key: str, pushed_at: float) -> None:
        """A front door's push for a model at zero: one replica at once, without waiting for a tick or
        collecting demand (the push is the demand). Writing 1 where a tick writes 1 too is harmless: the
        scale write reads first and leaves an equal count alone."""
        deployment = self.view.deployments.get(key)
        if deployment is None or not self.elector.leading():
            return
        state = self.models.setdefault(key, ModelMemory())
        current = self._current(key, deployment)
        if current > 0:
            return  # already on its way up; the ticks take it from here
        decision = decide(scale_of(deployment), 0, Observation(demand=1), self.clock(), state.memory)
        if decision.changes(0):
            await self._scale(key, deployment, [], 0, decision, Demand(held=1), pushed_at)

    def _current(self, key: str, deployment: dict[str, Any]) -> int:
        observed = int((deployment.get("spec") or {}).get("replicas") or 0)
        state = self.models[key]
        if state.written is not None:
            replicas, at = state.written
            if observed != replicas and self.clock() - at < 10:
                return replicas  # our write has not reached the watch yet: no decision from stale data
            state.written = None
        return observed

    async def _one(
        self,
        key: str,
        deployment: dict[str, Any],
        pods: list[dict[str, Any]],
        seen: Demand,
        fresh: bool,
    ) -> None:
        state = self.models.setdefault(key, ModelMemory())
        spec: ScaleSpec = scale_of(deployment)
        current = self._current(key, deployment)
        observation = Observation(demand=seen.total, busy_pods=seen.busy_pods, fresh=fresh)
        decision = decide(spec, current, observation, self.clock(), state.memory)
        state.memory = decision.memory
        state.demand = seen.total
        self.metrics.demand.labels(key).set(seen.total)
        self.metrics.desired.labels(key).set(decision.replicas)
        if decision.changes(current):
            await self._scale(key, deployment, pods, current, decision, seen, None)
        await self._publish(key, deployment, pods, decision, seen)

    async def _scale(
        self,
        key: str,
        deployment: dict[str, Any],
        pods: list[dict[str, Any]],
        current: int,
        decision: Decision,
        seen: Demand,
        pushed_at: float | None,
    ) -> None:
        namespace, name = key.split("/", 1)
        if decision.replicas < current:
            for pod in pods:  # idle pods go first
                url = _sidecar_url(pod)
                if url is not None:
                    await self.writer.deletion_cost(namespace, pod["metadata"]["name"], seen.per_pod.get(url, 0))
        if not self.elector.leading():  # checked again right before the write: never two writers
            return
        before = await self.writer.scale(namespace, name, decision.replicas)
        if before is None or before == decision.replicas:
            return  # gave up on conflicts, or someone (a concurrent pass) already wrote it
        self.models[key].written = (decision.replicas, self.clock())
        if pushed_at is not None:
            self.metrics.activation.observe(self.clock() - pushed_at)
        direction = "up" if decision.replicas > before else "down"
        self.metrics.decisions.labels(key, direction).inc()
        reason = (
            "Activated"
            if before == 0
            else "ScaledToZero"
            if decision.replicas == 0
            else "ScaledUp"
            if direction == "up"
            else "ScaledDown"
        )
        message = f"{before} -> {decision.replicas} replicas: {decision.reason} (demand {seen.total})"
        log.info("%s: %s", key, message)
        await self.writer.event(deployment, reason, message)

    async def _publish(
        self, key: str, deployment: dict[str, Any], pods: list[dict[str, Any]], decision: Decision, seen: Demand
    ) -> None:
        state = self.models[key]
        ready = [p for p in pods if backend_of(p) is not None]
        failed = failure(deployment, pods)
        now_phase = phase(decision.replicas, len(ready), failed)
        runtimes = {(p["metadata"].get("labels") or {}).get("hearth.dev/runtime") for p in pods} - {None}
        state.runtime = ", ".join(sorted(str(r) for r in runtimes)) if runtimes else state.runtime
        status: dict[str, Any] = {
            "demand": seen.total,
            "desired": decision.replicas,
            "ready": len(ready),
            "reason": decision.reason,
            "runtime": state.runtime,
        }
        if failed:
            status["failure"] = failed[:500]
        stale = self.clock() - state.status_at > STATUS_EVERY
        if now_phase == state.phase and (not stale or status == state.last_status):
            return
        if now_phase != state.phase and now_phase == "Degraded" and failed:
            await self.writer.event(deployment, "Degraded", failed[:1000], kind="Warning")
        namespace, name = key.split("/", 1)
        labels = {PHASE_LABEL: now_phase}
        await self.writer.mark(namespace, name, labels, {STATUS: json.dumps(status, sort_keys=True)})
        if now_phase != state.phase:
            log.info("%s: phase %s -> %s", key, state.phase, now_phase)
        state.phase, state.status_at, state.last_status = now_phase, self.clock(), status
