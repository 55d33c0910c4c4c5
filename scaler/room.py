"""Making room on the leader's tick: from the cluster view, the accelerator view and this tick's demand,
find model pods that cannot be placed and the idle replicas whose retirement places them
(scaler.packing decides), then retire those replicas by their Deployments' scale and say so in Events
and metrics. Also keeps `hearth_accelerators{resource,node,state}`."""

from __future__ import annotations

import datetime as dt
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from policies import (
    Capacity,
    Collector,
    ContractError,
    InferenceRuntime,
    PodSpec,
    ScaleSpec,
    api_time,
    format_duration,
    is_ready,
    key_namespace,
    model_key,
    parse_pod,
    pod_needs,
    runtime_has_room,
    scale_of,
    select_runtime,
    sidecar_url,
)
from scaler.ceilings import PriorityCeilings
from scaler.decision import wanted
from scaler.demand import Demand
from scaler.kube import KubeWriter
from scaler.metrics import ScalerMetrics
from scaler.packing import Candidate, Plan, Retire, Rules, Waiter, plan

log = logging.getLogger("hearth.scaler.room")
Obj = dict[str, Any]
RETIRING_FOR = 60.0  # seconds a retirement counts as room on its way before the view shows the pod going
SWAP_WINDOW = 60.0
RUNTIMES_FOR = 10.0  # seconds a list of the InferenceRuntimes serves the vendor fallback
STATES = ("free", "idle", "busy", "other")


@dataclass(frozen=True)
class Usage:
    """What the tick knows of one model: its Deployment, pods, demand, and when it last had a request."""

    deployment: Obj
    pods: list[Obj]
    demand: Demand
    idle_for: float
    replicas: int  # what the scaler counts as current (its own writes included)


def _pod_key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return model_key(str(meta.get("namespace", "")), str(meta.get("name", "")))


def _unbound(pod: Obj) -> bool:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    return not spec.get("nodeName") and not meta.get("deletionTimestamp")


def _since(stamp: object, now: dt.datetime) -> float:
    """Seconds since an API timestamp (0 when absent or broken: too young to act on)."""
    at = api_time(stamp)
    return 0.0 if at is None else max(0.0, (now - at).total_seconds())


def waiters(usage: Mapping[str, Usage], ceilings: PriorityCeilings | None = None) -> list[Waiter]:
    """Model pods that wait for a node, oldest first (priorities capped by their namespace's ceiling)."""
    cap = (ceilings or PriorityCeilings(None)).cap
    found: list[tuple[str, Waiter]] = []
    for key, model in usage.items():
        spec = scale_of(model.deployment)
        for pod in model.pods:
            needs = pod_needs(pod)
            if not needs or not _unbound(pod):
                continue
            pod_spec = pod.get("spec") or {}
            created = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
            waiter = Waiter(
                _pod_key(pod),
                key,
                cap(key_namespace(key), spec.priority),
                needs,
                {str(k): str(v) for k, v in (pod_spec.get("nodeSelector") or {}).items()},
                tuple(pod_spec.get("tolerations") or ()),
            )
            found.append((created, waiter))
    return [w for _, w in sorted(found, key=lambda f: (f[0], f[1].pod))]


def spare_replicas(spec: ScaleSpec, model: Usage) -> int:
    """Replicas the model could give up now: none while any request is held for it or any of its pods is
    starting, else those beyond min-replicas and what its demand asks for."""
    if model.demand.held > 0:
        return 0
    if any(
        _unbound(p) or (not is_ready(p) and not (p.get("metadata") or {}).get("deletionTimestamp")) for p in model.pods
    ):
        return 0
    return max(0, model.replicas - max(spec.min_replicas, wanted(spec, model.demand.total)))


def candidates(
    usage: Mapping[str, Usage], now: dt.datetime, ceilings: PriorityCeilings | None = None
) -> list[Candidate]:
    """Ready, bound replicas with nothing in flight (their sidecar answered this tick) of models that can
    give one up (priorities capped by their namespace's ceiling)."""
    cap = (ceilings or PriorityCeilings(None)).cap
    found: list[Candidate] = []
    for key, model in usage.items():
        spec = scale_of(model.deployment)
        spare = spare_replicas(spec, model)
        if spare <= 0:
            continue
        for pod in model.pods:
            url = sidecar_url(pod)
            node = (pod.get("spec") or {}).get("nodeName")
            holds = pod_needs(pod)
            if url is None or not node or not holds or not is_ready(pod):
                continue
            if url not in model.demand.per_pod or model.demand.per_pod[url] > 0:
                continue  # busy, or its sidecar did not answer: not known to be idle
            found.append(
                Candidate(
                    _pod_key(pod),
                    key,
                    str(node),
                    holds,
                    cap(key_namespace(key), spec.priority),
                    model.idle_for,
                    _since((pod.get("status") or {}).get("startTime"), now),
                    spare,
                )
            )
    return found


def _choice(deployment: Obj) -> tuple[Obj, PodSpec] | None:
    """The Deployment's pod template and its parsed keys, when the webhook chooses its vendor (a rendered
    model, no runtime pinned, not exactly one vendor listed)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = ((template.get("metadata") or {}).get("annotations")) or {}
    spec = parse_pod({str(k): str(v) for k, v in annotations.items()}, Collector())
    if spec is None or spec.model is None or spec.runtime is not None or len(spec.vendors) == 1:
        return None
    return template, spec


def fallback(view: Capacity, deployment: Obj, pod: Obj, runtimes: list[InferenceRuntime]) -> InferenceRuntime | None:
    """The runtime a waiting pod would get now, when its Deployment lists vendors (or none) and that
    runtime is not the one it got and has room for it; else None."""
    choice = _choice(deployment)
    if choice is None:
        return None
    template, spec = choice
    try:
        chosen = select_runtime(
            spec, runtimes, has_room=lambda r: runtime_has_room(view, r, template, spec.accelerators)
        )
    except ContractError:
        return None
    current = ((pod.get("metadata") or {}).get("labels") or {}).get("hearth.dev/runtime")
    if chosen.name == current or not runtime_has_room(view, chosen, template, spec.accelerators):
        return None
    return chosen


class RoomMaker:
    def __init__(
        self,
        writer: KubeWriter,
        metrics: ScalerMetrics,
        rules: Rules,
        clock: Callable[[], float],
        runtimes: Callable[[], Awaitable[list[InferenceRuntime]]] | None = None,
        fallback_after: float = 30.0,
        ceilings: PriorityCeilings | None = None,
    ) -> None:
        self.ceilings = ceilings or PriorityCeilings(None)
        self.runtimes = runtimes  # listed only when a pod has waited `fallback_after` with vendors to choose from
        self.fallback_after = fallback_after
        self._runtimes: tuple[float, list[InferenceRuntime]] | None = None  # when listed, and what
        self.writer = writer
        self.metrics = metrics
        self.rules = rules
        self.clock = clock
        self.retiring: dict[str, tuple[str, Mapping[str, int], float]] = {}  # pod -> (node, holds, when)
        self.swaps: dict[str, deque[float]] = {}  # resource -> times of recent retirements
        self.reported: dict[str, str] = {}  # waiting pod -> the reason it last waited for
        self.pools: set[tuple[str, str, str]] = set()  # label sets of hearth_accelerators last written

    def _incoming(self, view: Capacity) -> dict[tuple[str, str], int]:
        """Accelerators retired by earlier passes whose pods the capacity view still shows held (not going):
        the capacity view, not the view of model pods, whose watch may be ahead of it."""
        now = self.clock()
        held = view.bound_pods(terminating=False)
        incoming: dict[tuple[str, str], int] = {}
        for pod, (node, holds, at) in list(self.retiring.items()):
            if pod not in held or now - at > RETIRING_FOR:
                del self.retiring[pod]  # gone, or shown terminating (counted as freeing), or given up on
                continue
            for resource, count in holds.items():
                incoming[(node, resource)] = incoming.get((node, resource), 0) + count
        return incoming

    def _recent(self) -> dict[str, int]:
        cutoff = self.clock() - SWAP_WINDOW
        for times in self.swaps.values():
            while times and times[0] < cutoff:
                times.popleft()
        return {resource: len(times) for resource, times in self.swaps.items()}

    async def run(self, view: Capacity, usage: Mapping[str, Usage]) -> tuple[Plan, dict[str, int]]:
        """One pass: plan, then retire. Returns the plan and the replicas written per model retired from."""
        pods = {_pod_key(p): p for model in usage.values() for p in model.pods}
        now = dt.datetime.now(dt.UTC)
        found = candidates(usage, now, self.ceilings)
        # A pod the capacity view already shows on a node waits no more, though the model pods' watch may not
        # have seen it bound yet: taken for a waiter, the slot it holds would look taken by another, and a
        # second replica would be retired for it.
        placed = view.bound_pods()
        unplaced = [w for w in waiters(usage, self.ceilings) if w.pod not in placed]
        decided = plan(view, unplaced, found, self.rules, self._recent(), self._incoming(view))
        self._gauge(view, usage, {c.pod for c in found})
        by_model: dict[str, list[Retire]] = {}
        for retire in decided.retire:
            by_model.setdefault(retire.victim.model, []).append(retire)
        written: dict[str, int] = {}
        for model, retires in by_model.items():
            try:
                if await self._retire(usage, retires):
                    written[model] = usage[model].replicas - len(retires)
            except Exception as exc:
                self.metrics.failures.labels("retire").inc()
                log.warning("retiring replicas of %s failed: %s", model, exc)
        waiting: dict[str, int] = {}
        for stuck in decided.stuck:
            waiting[stuck.waiter.model] = waiting.get(stuck.waiter.model, 0) + 1
            if self.reported.get(stuck.waiter.pod) == stuck.why:
                continue
            log.info("%s waits: %s", stuck.waiter.pod, stuck.why)
            first = stuck.waiter.pod not in self.reported
            self.reported[stuck.waiter.pod] = stuck.why
            if first:  # one Event per waiting pod; later reasons go to the log
                await self._event(
                    usage[stuck.waiter.model].deployment,
                    "WaitingForAccelerators",
                    f"pod {stuck.waiter.pod.split('/', 1)[1]} cannot be placed: {stuck.why}",
                    "Warning",
                )
        await self._fall_back(view, usage, pods, [s.waiter for s in decided.stuck], now)
        waiting_pods = {w.pod for w in unplaced}
        self.reported = {pod: why for pod, why in self.reported.items() if pod in waiting_pods}
        self.metrics.set_waiting(waiting, usage.keys())
        return decided, written

    async def _fall_back(
        self, view: Capacity, usage: Mapping[str, Usage], pods: Mapping[str, Obj], stuck: list[Waiter], now: dt.datetime
    ) -> None:
        """Replace a pod that has waited `fallback_after` for its vendor when another listed vendor has room:
        its ReplicaSet makes a new one, which the webhook renders for the vendor with room."""
        late = [
            w
            for w in stuck
            if _since(pods[w.pod]["metadata"].get("creationTimestamp"), now) >= self.fallback_after
            and _choice(usage[w.model].deployment) is not None
        ]
        if not late or self.runtimes is None:
            return
        if self._runtimes is None or self.clock() - self._runtimes[0] > RUNTIMES_FOR:
            self._runtimes = (self.clock(), await self.runtimes())
        runtimes = self._runtimes[1]
        for waiter in late:
            pod, deployment = pods[waiter.pod], usage[waiter.model].deployment
            chosen = fallback(view, deployment, pod, runtimes)
            if chosen is None:
                continue
            meta = pod["metadata"]
            try:
                await self.writer.delete_pod(str(meta["namespace"]), str(meta["name"]), str(meta.get("uid") or ""))
            except Exception as exc:
                self.metrics.failures.labels("fallback").inc()
                log.warning("replacing %s failed: %s", waiter.pod, exc)
                continue
            self.metrics.fallbacks.labels(chosen.spec.vendor).inc()
            wanted = ", ".join(f"{k} {r}" for r, k in sorted(waiter.needs.items()))
            waited = format_duration(_since(meta.get("creationTimestamp"), now))
            message = (
                f"pod {meta['name']} waited {waited} for {wanted}; replaced, for runtime "
                f"{chosen.name} ({chosen.spec.vendor}), which has room"
            )
            log.info("%s: %s", waiter.model, message)
            await self._event(deployment, "VendorFallback", message)

    async def _retire(self, usage: Mapping[str, Usage], retires: list[Retire]) -> bool:
        """Scale the victims' model down by the replicas chosen, the chosen pods first (lowest deletion cost)."""
        model = usage[retires[0].victim.model]
        namespace, name = str(model.deployment["metadata"]["namespace"]), str(model.deployment["metadata"]["name"])
        chosen = {r.victim.pod for r in retires}
        for pod in model.pods:
            url = sidecar_url(pod)
            cost = -1000 if _pod_key(pod) in chosen else model.demand.per_pod.get(url or "", 0)
            await self.writer.deletion_cost(namespace, pod["metadata"]["name"], cost)
        target = model.replicas - len(retires)
        before = await self.writer.scale(namespace, name, target, expect=model.replicas)
        if before != model.replicas:
            log.info(
                "%s/%s changed under the retirement (%s replicas, not %d): left",
                namespace,
                name,
                before,
                model.replicas,
            )
            return False
        now = self.clock()
        for retire in retires:
            victim, waiter = retire.victim, retire.waiter
            self.retiring[victim.pod] = (retire.node, victim.holds, now)
            held = ", ".join(f"{k} {r}" for r, k in sorted(victim.holds.items()))
            for resource in victim.holds:
                self.swaps.setdefault(resource, deque()).append(now)
                self.metrics.retirements.labels(resource).inc()
            idle = format_duration(victim.idle_for)
            log.info("%s retired on %s for %s (idle %s)", victim.pod, retire.node, waiter.model, idle)
            await self._event(
                model.deployment,
                "Yielded",
                f"Yielded {held} on {retire.node} to {waiter.model}: retired 1 replica, idle {idle}",
            )
            await self._event(
                usage[waiter.model].deployment,
                "MadeRoom",
                f"Made room on {retire.node}: retired 1 replica of {victim.model}, idle {idle}",
            )
        return True

    async def _event(self, deployment: Obj, reason: str, message: str, kind: str = "Normal") -> None:
        try:
            await self.writer.event(deployment, reason, message, kind=kind)
        except Exception as exc:
            self.metrics.failures.labels("event").inc()
            log.warning("event %s failed: %s", reason, exc)

    def _gauge(self, view: Capacity, usage: Mapping[str, Usage], idle_pods: set[str]) -> None:
        """hearth_accelerators{resource,node,state}: free, idle (an idle Hearth replica that could be
        retired), busy (a Hearth replica), other (pods Hearth does not scale)."""
        written: set[tuple[str, str, str]] = set()
        for node, resource in view.pools():
            counts = dict.fromkeys(STATES, 0)
            counts["free"] = view.free(node, resource)
            for holding in view.holders.get((node, resource), []):
                state = "other" if holding.model not in usage else "idle" if holding.pod in idle_pods else "busy"
                counts[state] += holding.needs.get(resource, 0)
            for state, count in counts.items():
                self.metrics.accelerators.labels(resource, node, state).set(count)
                written.add((resource, node, state))
        for gone in self.pools - written:
            self.metrics.accelerators.remove(*gone)
        self.pools = written
