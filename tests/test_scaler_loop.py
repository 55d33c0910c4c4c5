"""The scaler's reconciler in process: a scripted cluster view, demand and writer, a manual clock. What
it writes (replicas, deletion costs, phase, Events) is checked call by call. The scaler on a real cluster
is in tests/e2e/test_scaling.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from scaler.demand import Demand
from scaler.loop import Scaler
from scaler.metrics import ScalerMetrics
from scaler.server import create_app

Obj = dict[str, Any]


def deployment(name: str, replicas: int, **annotations: str) -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {"hearth.dev/enabled": "true"},
            "annotations": {
                "hearth.dev/max-replicas": "3",
                "hearth.dev/target": "2",
                "hearth.dev/scale-down-delay": "10s",
                **annotations,
            },
        },
        "spec": {"replicas": replicas},
        "status": {},
    }


def pod(model: str, name: str, ip: str, ready: bool = True) -> Obj:
    stamp = {"runtime": "sim", "stamp": "v1", "servedName": model, "sidecarPort": 8090, "runtimePort": 8000}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"pod-template-hash": "abc", "hearth.dev/runtime": "sim"},
            "annotations": {"hearth.dev/rendered": json.dumps(stamp)},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{model}-abc"}],
        },
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class View:
    def __init__(self) -> None:
        self.deployments: dict[str, Obj] = {}
        self.pods: dict[str, Obj] = {}
        self.synced = True
        self.on_malformed: Callable[[Obj, str], None] | None = None

    def pods_by_model(self) -> dict[str, list[Obj]]:
        return {
            key: [
                p
                for p in self.pods.values()
                if p["metadata"]["ownerReferences"][0]["name"] == f"{d['metadata']['name']}-abc"
            ]
            for key, d in self.deployments.items()
        }

    def deployment_of(self, pod: Mapping[str, Any]) -> Obj | None:
        owner = pod["metadata"]["ownerReferences"][0]["name"].rsplit("-", 1)[0]
        return self.deployments.get(f"ns/{owner}")


class Collector:
    """Demand per model as the test sets it; `fresh` as the test sets it."""

    def __init__(self) -> None:
        self.demand: dict[str, Demand] = {}
        self.fresh = True

    async def collect(self, pods_by_model: dict[str, list[Obj]]) -> tuple[dict[str, Demand], bool]:
        return dict(self.demand), self.fresh


class Writer:
    """Records every write; a scale write lands in the view at once (the watch catching up)."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.calls: list[tuple[Any, ...]] = []
        self.failing: set[str] = set()

    async def scale(
        self, namespace: str, name: str, replicas: int, attempts: int = 3, expect: int | None = None
    ) -> int | None:
        if name in self.failing:
            raise ConnectionError("apiserver unreachable")
        spec = self.view.deployments[f"{namespace}/{name}"]["spec"]
        before = int(spec["replicas"])
        if expect is not None and before != expect:
            return before
        spec["replicas"] = replicas
        self.calls.append(("scale", name, replicas))
        return before

    async def mark(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        self.calls.append(("mark", name, labels["hearth.dev/phase"]))

    async def condition(self, namespace: str, name: str, condition: dict[str, str]) -> None:
        self.calls.append(("condition", name, condition["reason"], condition["message"]))

    async def event(self, deployment: Obj, reason: str, message: str, kind: str = "Normal") -> None:
        self.calls.append(("event", deployment["metadata"]["name"], reason, kind, message))

    async def deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        self.calls.append(("cost", pod, cost))

    def events(self) -> list[tuple[str, str]]:
        return [(c[2], c[3]) for c in self.calls if c[0] == "event"]


class Elector:
    def __init__(self) -> None:
        self.identity = "scaler-0"
        self.lead = True

    def leading(self) -> bool:
        return self.lead


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def setup() -> tuple[Scaler, View, Collector, Writer, Elector, Clock]:
    view, collector, elector, clock = View(), Collector(), Elector(), Clock()
    writer = Writer(view)
    scaler = Scaler(view, collector, writer, elector, ScalerMetrics(CollectorRegistry()), clock)  # type: ignore[arg-type]
    return scaler, view, collector, writer, elector, clock


def test_every_event_reason_is_written_when_it_happens() -> None:
    scaler, view, collector, writer, _, clock = setup()
    view.deployments["ns/chat"] = deployment("chat", 0)

    async def scenario() -> None:
        collector.demand["ns/chat"] = Demand(held=1)
        await scaler.tick()  # 0 -> 1
        collector.demand["ns/chat"] = Demand(held=6)
        clock.now += 1
        await scaler.tick()  # 1 -> 3: demand 6 over target 2
        collector.demand["ns/chat"] = Demand(gateway_in_flight=3, sidecar_in_flight=3, busy_pods=2)
        clock.now += 1
        await scaler.tick()  # demand lower: the delay starts
        clock.now += 11
        await scaler.tick()  # 3 -> 2 after scale-down-delay
        collector.demand["ns/chat"] = Demand()
        for _ in range(3):
            clock.now += 11
            await scaler.tick()  # 2 -> 1 -> 0
        view.deployments["ns/chat"]["status"]["conditions"] = [
            {"type": "ReplicaFailure", "status": "True", "message": "pods refused: admission webhook denied"}
        ]
        collector.demand["ns/chat"] = Demand(held=1)
        clock.now += 1
        await scaler.tick()  # wants 1, cannot start: Degraded
        view.pods["ns/forged"] = pod("chat", "forged", "10.0.0.9")
        scaler.report_malformed(view.pods["ns/forged"], "hearth.dev/rendered is not a stamp Hearth wrote")
        await asyncio.sleep(0)  # the report is its own task

    asyncio.run(scenario())
    assert [c[2] for c in writer.calls if c[0] == "scale"] == [1, 3, 2, 1, 0, 1]
    assert writer.events() == [
        ("Activated", "Normal"),
        ("ScaledUp", "Normal"),
        ("ScaledDown", "Normal"),
        ("ScaledDown", "Normal"),
        ("ScaledToZero", "Normal"),
        ("Activated", "Normal"),
        ("Degraded", "Warning"),
        ("MalformedPod", "Warning"),
    ]
    assert [c[2] for c in writer.calls if c[0] == "mark"][-1] == "Degraded"
    reason, message = [c[2:] for c in writer.calls if c[0] == "condition"][-1]
    assert reason == "Degraded" and message.endswith("failed: pods refused: admission webhook denied")


def test_a_scale_down_writes_deletion_costs_first_so_idle_pods_go() -> None:
    scaler, view, collector, writer, _, clock = setup()
    view.deployments["ns/chat"] = deployment("chat", 2)
    view.pods = {"ns/busy": pod("chat", "busy", "10.0.0.1"), "ns/idle": pod("chat", "idle", "10.0.0.2")}
    busy, idle = "http://10.0.0.1:8090", "http://10.0.0.2:8090"
    collector.demand["ns/chat"] = Demand(sidecar_in_flight=1, busy_pods=1, per_pod={busy: 1, idle: 0})

    async def scenario() -> None:
        await scaler.tick()  # demand 1 wants 1 replica: the delay starts
        clock.now += 11
        await scaler.tick()  # 2 -> 1

    asyncio.run(scenario())
    writes = [c for c in writer.calls if c[0] in ("cost", "scale")]
    assert writes == [("cost", "busy", 1), ("cost", "idle", 0), ("scale", "chat", 1)]


def test_a_standby_writes_nothing_and_refuses_activations() -> None:
    scaler, view, collector, writer, elector, _ = setup()
    elector.lead = False
    view.deployments["ns/chat"] = deployment("chat", 0)
    collector.demand["ns/chat"] = Demand(held=5)

    async def scenario() -> httpx.Response:
        await scaler.tick()
        scaler.report_malformed(pod("chat", "forged", "10.0.0.9"), "forged")
        transport = httpx.ASGITransport(app=create_app(scaler, CollectorRegistry()))
        async with httpx.AsyncClient(transport=transport, base_url="http://scaler") as client:
            return await client.post("/activate", json={"model": "ns/chat"})

    answer = asyncio.run(scenario())
    assert answer.status_code == 409 and "not the leader" in answer.json()["error"]
    assert writer.calls == []


def test_the_leader_takes_an_activation_push_at_once() -> None:
    scaler, view, _, writer, _, _ = setup()
    view.deployments["ns/chat"] = deployment("chat", 0)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(scaler, CollectorRegistry()))
        async with httpx.AsyncClient(transport=transport, base_url="http://scaler") as client:
            accepted = await client.post("/activate", json={"model": "ns/chat"})
            unknown = await client.post("/activate", json={"model": "ns/other"})
        for _ in range(3):
            await asyncio.sleep(0)  # the activation runs as its own task
        return accepted, unknown

    accepted, unknown = asyncio.run(scenario())
    assert accepted.status_code == 202 and unknown.status_code == 404
    assert ("scale", "chat", 1) in writer.calls and ("Activated", "Normal") in writer.events()


def test_a_failing_write_for_one_model_never_stops_the_others() -> None:
    scaler, view, collector, writer, _, _ = setup()
    view.deployments = {"ns/broken": deployment("broken", 0), "ns/chat": deployment("chat", 0)}
    collector.demand = {"ns/broken": Demand(held=1), "ns/chat": Demand(held=1)}
    writer.failing.add("broken")
    asyncio.run(scaler.tick())
    assert ("scale", "chat", 1) in writer.calls
    assert scaler.metrics.registry.get_sample_value("hearth_scaler_errors_total", {"what": "model"}) == 1


def test_a_start_from_zero_is_measured_from_the_pod_and_predicts_the_next() -> None:
    from tests.test_coldstart import started

    scaler, view, collector, writer, _, clock = setup()
    view.deployments["ns/chat"] = deployment("chat", 0)
    collector.demand = {"ns/chat": Demand(held=1)}
    asyncio.run(scaler.tick())  # 0 -> 1: Activating
    view.pods["ns/chat-1"] = pod("chat", "chat-1", "10.0.0.1", ready=False)
    clock.now += 1
    asyncio.run(scaler.tick())
    ready = pod("chat", "chat-1", "10.0.0.1")
    ready["status"] = {**started(0)["status"], "podIP": "10.0.0.1"}
    ready["metadata"]["creationTimestamp"] = started(0)["metadata"]["creationTimestamp"]
    view.pods["ns/chat-1"] = ready
    clock.now += 1
    asyncio.run(scaler.tick())  # Activating -> Ready: the start (14 s, warm) is recorded
    message = [c for c in writer.calls if c[0] == "condition"][-1][3]
    assert "starts w14" in message and "eta 14" in message
    totals = scaler.metrics.registry.get_sample_value("hearth_cold_start_seconds_sum", {"stage": "total"})
    assert totals == 14.0
    assert scaler.metrics.registry.get_sample_value("hearth_cold_start_eta_seconds", {"model": "ns/chat"}) == 14.0
    # A new leader keeps the history from the condition it finds.
    follower, view2, _, writer2, _, _ = setup()
    view2.deployments["ns/chat"] = deployment("chat", 0)
    view2.deployments["ns/chat"]["status"] = {
        "conditions": [
            {"type": "hearth.dev/Serving", "reason": "ScaledToZero", "message": message, "lastTransitionTime": "t0"}
        ]
    }
    asyncio.run(follower.tick())
    assert "starts w14" in [c for c in writer2.calls if c[0] == "condition"][-1][3]


def test_an_anticipated_wake_is_an_event_and_holds_the_replica_until_the_usual_hour() -> None:
    from policies.anticipation import format_usage
    from scaler.anticipate import Anticipator
    from tests.test_anticipation import at, used_at_nine

    view, collector, elector, clock = View(), Collector(), Elector(), Clock()
    writer = Writer(view)
    wall = [at(14, 9) - 100]  # a Monday, 08:58:20 UTC, after two weeks of use from 9:00
    anticipator = Anticipator(per_day=2, wall=lambda: wall[0])
    metrics = ScalerMetrics(CollectorRegistry())
    scaler = Scaler(view, collector, writer, elector, metrics, clock, anticipator=anticipator)  # type: ignore[arg-type]
    usage = f"usage {format_usage(used_at_nine(2))}"
    view.deployments["ns/chat"] = deployment("chat", 0, **{"hearth.dev/anticipate": "true"})
    view.deployments["ns/chat"]["status"] = {
        "conditions": [
            {"type": "hearth.dev/Serving", "reason": "ScaledToZero", "message": usage, "lastTransitionTime": "t"}
        ]
    }
    asyncio.run(scaler.tick())
    assert ("scale", "chat", 1) in writer.calls
    (event,) = [c for c in writer.calls if c[0] == "event"]
    assert event[2] == "Anticipated" and "Mon 09:00-09:15 UTC" in event[4]
    assert metrics.registry.get_sample_value("hearth_scaler_anticipated_wakes_total", {"model": "ns/chat"}) == 1
    clock.now += 600  # ten idle minutes later, still before 09:15: held, whatever scale-down-delay (10 s) says
    wall[0] += 600
    asyncio.run(scaler.tick())
    assert ("scale", "chat", 0) not in writer.calls
    assert "anticipated " in [c for c in writer.calls if c[0] == "condition"][-1][3]
