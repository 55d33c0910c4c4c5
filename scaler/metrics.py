"""Prometheus metrics of the scaler, on a registry passed in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ScalerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.leader = Gauge("hearth_scaler_leader", "1 while this replica holds the lease and acts.", registry=registry)
        self.demand = Gauge(
            "hearth_scaler_demand", "Held + in-flight requests seen last tick.", ["model"], registry=registry
        )
        self.desired = Gauge("hearth_scaler_desired_replicas", "Replicas last decided.", ["model"], registry=registry)
        self.sidecars_answering = Gauge(
            "hearth_scaler_sidecars_answering",
            "Model pods whose sidecar answered /demand last tick (fewer than the pods: a NetworkPolicy, a token "
            "or a broken pod keeps the scaler from counting them).",
            ["model"],
            registry=registry,
        )
        self.decisions = Counter(
            "hearth_scaler_scale_writes",
            "Replica changes written, by direction.",
            ["model", "direction"],
            registry=registry,
        )
        self.prewarm = Gauge(
            "hearth_scaler_prewarm_nodes",
            "Nodes a prewarmed model should be cached on, by state: warm (holds it), fetching, failed.",
            ["model", "state"],
            registry=registry,
        )
        self.accelerators = Gauge(
            "hearth_accelerators",
            "Accelerators per node and resource, by state: free; idle (held by an idle Hearth replica that may "
            "be retired to make room); busy (held by a Hearth replica that may not); other (pods Hearth does not "
            "scale).",
            ["resource", "node", "state"],
            registry=registry,
        )
        self.retirements = Counter(
            "hearth_scaler_retirements",
            "Idle replicas retired to make room for a waking model, by the accelerator they freed.",
            ["resource"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "hearth_scaler_vendor_fallbacks",
            "Waiting model pods replaced so that the next is rendered for another listed vendor, which has room.",
            ["vendor"],
            registry=registry,
        )
        self.waiting = Gauge(
            "hearth_scaler_pods_waiting_for_accelerators",
            "Model pods that cannot be placed and for which no room can be made now.",
            ["model"],
            registry=registry,
        )
        self.failures = Counter("hearth_scaler_errors", "Failed calls, by what failed.", ["what"], registry=registry)
        self.cold_start = Histogram(
            "hearth_cold_start_seconds",
            "Starts from zero to the first ready pod, by stage: schedule (to a node), fetch (the node cache's "
            "hearth-fetch), start (the containers), load (to Ready), total (from the pod's creation).",
            ["stage"],
            buckets=(1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800),
            registry=registry,
        )
        self.eta = Gauge(
            "hearth_cold_start_eta_seconds",
            "The predicted length of the model's next start from zero (policies.coldstart.predict).",
            ["model"],
            registry=registry,
        )
        self.eta_error = Histogram(
            "hearth_cold_start_eta_error_seconds",
            "How far each cold start was from the prediction made before it (|actual - predicted|).",
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
            registry=registry,
        )
        self.anticipated = Counter(
            "hearth_scaler_anticipated_wakes",
            "Models woken before an hour in which their use usually begins (hearth.dev/anticipate).",
            ["model"],
            registry=registry,
        )
        self.llmservice_applies = Counter(
            "hearth_llmservice_applies",
            "Deployments applied for LLMServices (created or changed: applied), LLMServices refused (once as each "
            "turns conflict: a Deployment of that name it does not own; or invalid), and failed passes (error).",
            ["result"],
            registry=registry,
        )
        self.tick = Histogram(
            "hearth_scaler_tick_seconds",
            "Time of one scaling pass.",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.activation = Histogram(
            "hearth_scaler_activation_seconds",
            "From an activation push to the scale write.",
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
        )

    def forget(self, model: str) -> None:
        for metric in (self.demand, self.desired, self.sidecars_answering, self.waiting, self.eta, self.anticipated):
            with contextlib.suppress(KeyError):
                metric.remove(model)

    def set_waiting(self, waiting: Mapping[str, int], models: Iterable[str]) -> None:
        for model in models:
            self.waiting.labels(model).set(waiting.get(model, 0))

    def forget_prewarm(self, model: str) -> None:
        for state in ("warm", "fetching", "failed"):
            with contextlib.suppress(KeyError):
                self.prewarm.remove(model, state)
