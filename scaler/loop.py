"""The scaler loop: watch opted-in Deployments and their pods, collect demand from every gateway front
door and sidecar each tick (and at once on a front door's activation push), decide, and write replicas
through the scale subresource, while holding the lease. Publishes the phase label, a status condition
and Kubernetes Events. The cluster view (scaler.view), the demand (scaler.demand) and the writes
(scaler.kube) are adapters; this module is the reconciler between them."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from common.accelerators import AcceleratorView
from policies import (
    ACTIVATING,
    COLD_START,
    DEGRADED,
    PHASE_LABEL,
    READY,
    SCALING,
    ScaleSpec,
    backend_of,
    condition,
    format_history,
    kind_of,
    model_key_of,
    parse_history,
    phase,
    phase_since,
    predict,
    scale_of,
    sidecar_url,
    stages_of,
    start_failure,
    status_of,
)
from scaler.anticipate import Anticipator
from scaler.decision import Decision, Memory, Observation, decide
from scaler.demand import Demand, DemandCollector
from scaler.kube import KubeWriter
from scaler.leader import LeaderElector
from scaler.metrics import ScalerMetrics
from scaler.names import NameRecord
from scaler.prewarm import Prewarmer
from scaler.room import RoomMaker, Usage
from scaler.view import ClusterView

log = logging.getLogger("hearth.scaler")
STATUS_EVERY = 15.0  # seconds between status-condition refreshes when only the demand moved


@dataclass
class ModelMemory:
    memory: Memory = field(default_factory=Memory)
    written: tuple[int, float] | None = None  # replicas we wrote and when (until the watch catches up)
    phase: str | None = None
    status_at: float = 0.0
    demand: int = 0
    runtime: str | None = None
    last_status: dict[str, Any] | None = None
    since: str | None = None  # when the phase last changed, as the condition says
    last_used: float | None = None  # when a tick last saw a request held, in flight or started
    used: str | None = None  # the same, in UTC, for the condition (`hearth status --capacity` shows it)
    starts: list[tuple[str, float]] | None = None  # recent cold starts (policies.coldstart), from the condition


class Scaler:
    def __init__(
        self,
        view: ClusterView,
        collector: DemandCollector,
        writer: KubeWriter,
        elector: LeaderElector,
        metrics: ScalerMetrics,
        clock: Any = time.monotonic,
        names: NameRecord | None = None,
        prewarmer: Prewarmer | None = None,
        accelerators: AcceleratorView | None = None,
        room: RoomMaker | None = None,
        anticipator: Anticipator | None = None,
    ) -> None:
        self.view = view
        self.collector = collector
        self.writer = writer
        self.elector = elector
        self.metrics = metrics
        self.clock = clock
        self.names = names
        self.prewarmer = prewarmer
        self.accelerators = accelerators
        self.room = room
        self.anticipator = anticipator
        self.models: dict[str, ModelMemory] = {}
        self._lock = asyncio.Lock()
        self._reports: set[asyncio.Task[None]] = set()
        view.on_malformed = self.report_malformed

    async def tick(self) -> None:
        """One pass over every model."""
        leading = self.elector.leading()
        self.metrics.leader.set(1 if leading else 0)
        if not leading or not self.view.synced:
            return
        async with self._lock:
            started = self.clock()
            deployments = dict(self.view.deployments)
            pods = self.view.pods_by_model()
            demand, fresh = await self.collector.collect(pods)
            for key, deployment in deployments.items():
                try:
                    await self._one(key, deployment, pods[key], demand.get(key, Demand()), fresh)
                except Exception as exc:
                    self.metrics.failures.labels("model").inc()
                    log.warning("scaling %s failed: %s", key, exc)
            await self._make_room(deployments, pods, demand)
            for gone in [k for k in self.models if k not in self.view.deployments]:
                del self.models[gone]
                self.metrics.forget(gone)
            if self.names is not None:
                try:
                    await self.names.sync(deployments.values())
                except Exception as exc:
                    self.metrics.failures.labels("names").inc()
                    log.warning("recording model names failed: %s", exc)
            self.metrics.tick.observe(self.clock() - started)

    async def _make_room(
        self, deployments: dict[str, dict[str, Any]], pods: dict[str, list[dict[str, Any]]], demand: dict[str, Demand]
    ) -> None:
        """Retire idle replicas of other models for model pods that cannot be placed (scaler.room)."""
        if self.room is None or self.accelerators is None or not self.accelerators.synced:
            return
        now = self.clock()
        usage: dict[str, Usage] = {}
        for key, deployment in deployments.items():
            state = self.models.setdefault(key, ModelMemory())
            last = state.last_used if state.last_used is not None else now
            usage[key] = Usage(
                deployment, pods[key], demand.get(key, Demand()), now - last, self._current(key, deployment)
            )
        try:
            _, written = await self.room.run(self.accelerators.capacity(), usage)
        except Exception as exc:
            self.metrics.failures.labels("room").inc()
            log.warning("making room failed: %s", exc)
            return
        for key, replicas in written.items():
            # The retirement closes the model's past demand: its short window must not wake it again (a
            # new request does).
            self.models[key].written = (replicas, now)
            self.models[key].memory = Memory()

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

    def report_malformed(self, pod: dict[str, Any], problem: str) -> None:
        """A Warning Event on the Deployment of a pod the view skipped (from the leader only: one Event)."""
        deployment = self.view.deployment_of(pod)
        if deployment is None or not self.elector.leading():
            return
        name = (pod.get("metadata") or {}).get("name")
        message = f"pod {name} is ignored (not routed to, not counted): {problem}"[:1000]
        task = asyncio.ensure_future(self._report(deployment, message))
        self._reports.add(task)  # keep a reference until done (the loop holds only a weak one)
        task.add_done_callback(self._reports.discard)

    async def _report(self, deployment: dict[str, Any], message: str) -> None:
        try:
            await self.writer.event(deployment, "MalformedPod", message, kind="Warning")
        except Exception as exc:
            self.metrics.failures.labels("event").inc()
            log.warning("could not report a malformed pod of %s: %s", model_key_of(deployment), exc)

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
        used = seen.total > 0 or seen.started > 0
        hold, wake = False, None
        if self.anticipator is not None:  # waking before the rush (scaler.anticipate)
            eta = predict(self._history(state, deployment)) if spec.anticipate else None
            hold, wake = self.anticipator.tick(key, deployment, spec.anticipate, used, current, eta)
        if used:
            state.last_used = self.clock()
            state.used = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif state.last_used is None:
            state.last_used = self.clock()  # first seen counts as just used: no retirement on a new leader's word
        observation = Observation(
            demand=seen.total,
            busy_pods=seen.busy_pods,
            fresh=fresh,
            started=max(seen.started, 1 if hold else 0),  # an expected use counts as a started request
            busy_seconds=seen.busy_seconds,
            interval=seen.interval,
        )
        decision = decide(spec, current, observation, self.clock(), state.memory)
        if wake is not None and decision.replicas > current:
            decision = replace(decision, reason=f"anticipating use at {wake.text}")
            self.metrics.anticipated.labels(key).inc()
        state.memory = decision.memory
        state.demand = seen.total
        self.metrics.demand.labels(key).set(seen.total)
        self.metrics.desired.labels(key).set(decision.replicas)
        self.metrics.sidecars_answering.labels(key).set(seen.answering_pods)
        if decision.changes(current):
            await self._scale(key, deployment, pods, current, decision, seen, None, anticipated=wake is not None)
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
        anticipated: bool = False,
    ) -> None:
        namespace, name = key.split("/", 1)
        if decision.replicas < current:
            for pod in pods:  # idle pods go first
                url = sidecar_url(pod)
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
            ("Anticipated" if anticipated else "Activated")
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
        failed = start_failure(deployment, pods)
        now_phase = phase(decision.replicas, len(ready), failed)
        runtimes = {(p["metadata"].get("labels") or {}).get("hearth.dev/runtime") for p in pods} - {None}
        state.runtime = ", ".join(sorted(str(r) for r in runtimes)) if runtimes else state.runtime
        starts = self._history(state, deployment)
        if state.phase == ACTIVATING and now_phase in (READY, SCALING):
            self._record_start(key, starts, ready)
        eta = predict(starts)
        if eta is not None:
            self.metrics.eta.labels(key).set(eta)
        status: dict[str, Any] = {
            "demand": seen.total,
            "desired": decision.replicas,
            "ready": len(ready),
            "reason": decision.reason,
            "runtime": state.runtime,
            "prewarmed": self.prewarmer.summaries.get(key) if self.prewarmer is not None else None,
            "used": state.used or status_of(deployment).get("used"),  # a new leader keeps its predecessor's
            "starts": format_history(starts) or None,
            "eta": None if eta is None else round(eta),
            "cold-eta": self._cold_eta(starts, eta),
            **(self.anticipator.fields(key) if self.anticipator is not None else {}),
        }
        if failed:
            status["failure"] = failed[:500]
        stale = self.clock() - state.status_at > STATUS_EVERY
        stale = stale or status["prewarmed"] != (state.last_status or {}).get("prewarmed")  # rare, and asked for
        if now_phase == state.phase and (not stale or status == state.last_status):
            return
        if now_phase != state.phase and now_phase == DEGRADED and failed:
            await self.writer.event(deployment, "Degraded", failed[:1000], kind="Warning")
        namespace, name = key.split("/", 1)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if now_phase != state.phase or state.since is None:
            state.since = phase_since(deployment, now_phase) or stamp
        await self.writer.condition(namespace, name, condition(now_phase, status, stamp, state.since))
        if now_phase != state.phase:
            await self.writer.mark(namespace, name, {PHASE_LABEL: now_phase})
            log.info("%s: phase %s -> %s", key, state.phase, now_phase)
        state.phase, state.status_at, state.last_status = now_phase, self.clock(), status

    @staticmethod
    def _cold_eta(starts: list[tuple[str, float]], eta: float | None) -> int | None:
        """The prediction for a start whose node must fetch the weights, when it differs from `eta`."""
        if not any(kind == COLD_START for kind, _ in starts):
            return None
        cold = round(predict(starts, COLD_START) or 0)
        return cold if eta is None or cold != round(eta) else None

    @staticmethod
    def _history(state: ModelMemory, deployment: dict[str, Any]) -> list[tuple[str, float]]:
        """The model's recent starts from zero; read once from the condition, so a new leader keeps its
        predecessor's history."""
        if state.starts is None:
            state.starts = parse_history(status_of(deployment).get("starts"))
        return state.starts

    def _record_start(self, key: str, starts: list[tuple[str, float]], ready: list[dict[str, Any]]) -> None:
        """A model just came up from zero: its first ready pod's start, stage by stage, joins the history
        the next start is predicted from (policies.coldstart)."""
        measured = [s for s in (stages_of(p) for p in ready) if s is not None]
        if not measured:
            return
        first = min(measured, key=lambda s: s["total"])
        predicted = predict(starts, kind_of(first))
        starts.append((kind_of(first), first["total"]))
        for stage, seconds in first.items():
            self.metrics.cold_start.labels(stage).observe(seconds)
        if predicted is not None:
            self.metrics.eta_error.observe(abs(first["total"] - predicted))
        log.info(
            "%s: cold start %.0fs (%s; predicted %s)",
            key,
            first["total"],
            ", ".join(f"{stage} {seconds:.0f}s" for stage, seconds in first.items() if stage != "total"),
            "-" if predicted is None else f"{predicted:.0f}s",
        )
