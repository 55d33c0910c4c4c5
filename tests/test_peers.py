"""How Hearth's components find and reach each other: peer pods from the API, activation pushes that
keep trying until the leading scaler accepts, and the local clusters' private address ranges."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from common.peers import peer_urls
from devcluster.network import Network, NetworkError
from gateway.activator import Activator
from gateway.metrics import GatewayMetrics


def pod(ip: str | None, phase: str = "Running", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"p-{ip}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-29T10:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "podIP": ip}}


def test_peers_are_running_pods_with_an_address_not_being_deleted() -> None:
    pods = [
        pod("10.0.0.9"),
        pod("10.0.0.2"),
        pod(None, "Pending"),
        pod("10.0.0.3", "Failed"),
        pod("10.0.0.4", deleting=True),
    ]
    assert peer_urls(pods, 8081) == ["http://10.0.0.2:8081", "http://10.0.0.9:8081"]


def test_the_scaler_counts_a_front_door_that_drains_and_does_not_wait_on_one_that_stopped() -> None:
    """A front door being deleted (a rolling upgrade) still holds requests: their demand must reach the
    scaler, or a model at zero is never woken for them (they hung until the activation timeout and the old
    front door stayed Terminating for its whole shutdown timeout). One that no longer answers adds nothing
    and does not make the tick stale."""
    from scaler.demand import DemandCollector

    pods = [pod("10.0.0.2"), pod("10.0.0.4", deleting=True)]
    assert peer_urls(pods, 8081, leaving=True) == ["http://10.0.0.2:8081", "http://10.0.0.4:8081"]
    held = {"http://10.0.0.4:8081": {"held": 3, "inFlight": 0, "started": 0, "busySeconds": 0}}

    def answer(request: httpx.Request) -> httpx.Response:
        base = f"http://{request.url.host}:{request.url.port}"
        if base not in held:
            return httpx.Response(200, json={"models": {}})
        return httpx.Response(200, json={"models": {"ns/m": held[base]}})

    async def run() -> tuple[float, bool]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            urls = peer_urls(pods, 8081, leaving=True)
            collector = DemandCollector(client, lambda: urls, leaving=lambda: {"http://10.0.0.4:8081"})
            demand, fresh = await collector.collect({"ns/m": []})
            return demand["ns/m"].held, fresh

    assert asyncio.run(run()) == (3, True)
    held.clear()

    def gone(request: httpx.Request) -> httpx.Response:
        if request.url.host == "10.0.0.4":
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"models": {}})

    async def stopped() -> bool:
        async with httpx.AsyncClient(transport=httpx.MockTransport(gone)) as client:
            urls = peer_urls(pods, 8081, leaving=True)
            collector = DemandCollector(client, lambda: urls, leaving=lambda: {"http://10.0.0.4:8081"})
            return (await collector.collect({"ns/m": []}))[1]

    assert asyncio.run(stopped()) is True


def count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def run_activator(answers: dict[str, list[int | None]], retry_for: float) -> tuple[list[str], CollectorRegistry]:
    """Poke once; each scaler URL answers its statuses in turn (None: connection refused)."""
    calls: list[str] = []
    queues = {url: iter(statuses) for url, statuses in answers.items()}

    def handler(request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        calls.append(base)
        status = next(queues[base], 409)
        if status is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(status, json={})

    registry = CollectorRegistry()

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            activator = Activator(client, lambda: list(answers), GatewayMetrics(registry), retry_for=retry_for)
            activator.poke("ai/qwen")
            activator.poke("ai/qwen")  # one push per model at a time
            await activator.settle()

    asyncio.run(main())
    return calls, registry


def test_the_push_goes_to_every_scaler_until_the_leader_accepts() -> None:
    standby, leader = "http://10.0.0.1:8081", "http://10.0.0.2:8081"
    calls, registry = run_activator({standby: [409, 409], leader: [None, 202]}, retry_for=5)
    assert sorted(calls) == sorted([standby, leader, standby, leader])  # two rounds, both scalers each time
    assert count(registry, "hearth_gateway_activation_pushes_total", model="ai/qwen", outcome="accepted") == 1
    assert count(registry, "hearth_gateway_activation_push_seconds_count", model="ai/qwen") == 1


def test_a_push_nobody_accepts_is_given_up_after_its_deadline() -> None:
    calls, registry = run_activator({"http://10.0.0.1:8081": []}, retry_for=0.5)
    assert len(calls) >= 2  # retried with backoff, then given up (the scaler's tick still sees the demand)
    assert count(registry, "hearth_gateway_activation_pushes_total", model="ai/qwen", outcome="unacknowledged") == 1
    assert count(registry, "hearth_gateway_activation_pushes_total", model="ai/qwen", outcome="accepted") == 0


def test_clusters_side_by_side_never_share_an_address() -> None:
    def ranges(k: int) -> list[ipaddress.IPv4Network]:
        net = Network(k)
        return [ipaddress.IPv4Network(c) for c in (net.node_cidr, net.pod_cidr, net.service_cidr)]

    every = [(k, r) for k in range(1, 56) for r in ranges(k)]
    for (k1, a), (k2, b) in itertools.combinations(every, 2):
        assert not a.overlaps(b), (k1, a, k2, b)
    net = Network(20)
    assert ipaddress.ip_address(net.node_ip(1)) in ipaddress.ip_network(net.node_cidr)
    assert ipaddress.IPv4Network(net.node_pod_cidr(1)).subnet_of(ipaddress.IPv4Network(net.pod_cidr))
    assert ipaddress.ip_address(net.kubernetes_service_ip) in ipaddress.ip_network(net.service_cidr)
    with pytest.raises(NetworkError, match=r"1\.\.55"):
        Network(56)


def test_a_tick_that_finds_no_front_door_is_not_fresh_when_front_doors_are_discovered() -> None:
    from scaler.demand import DemandCollector

    async def collect(require: bool) -> bool:
        async with httpx.AsyncClient() as client:
            _, fresh = await DemandCollector(client, lambda: [], require_front_door=require).collect({})
            return fresh

    assert asyncio.run(collect(require=True)) is False  # no scale-down on the word of nobody
    assert asyncio.run(collect(require=False)) is True  # fixed URLs: none configured is a valid setup


def test_requests_started_are_counted_by_their_increase_at_every_front_door() -> None:
    """Each front door reports a running count of requests started per model; a tick adds up how much each
    grew since the last one: nothing for a count seen the first time, all of it after a restart (it fell),
    and a front door that missed a tick keeps its last count."""
    import httpx

    from scaler.demand import DemandCollector

    running: dict[str, list[int | None]] = {"a": [5, 8, 8, 2, None, 4], "b": [1, 1, 3, 3, 3, 3]}
    tick = {"n": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        value = running[request.url.host][tick["n"]]
        if value is None:
            return httpx.Response(503)
        counts = {"held": 0, "inFlight": 0, "started": value, "busySeconds": value / 2}
        return httpx.Response(200, json={"models": {"ns/m": counts}})

    async def run() -> list[tuple[int, float]]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            collector = DemandCollector(client, lambda: ["http://a", "http://b"])
            seen = []
            for n in range(6):
                tick["n"] = n
                demand, _ = await collector.collect({"ns/m": []})
                seen.append((demand["ns/m"].started, demand["ns/m"].busy_seconds))
            return seen

    started = [0, 3 + 0, 0 + 2, 2 + 0, 0 + 0, 2 + 0]
    assert asyncio.run(run()) == [(n, n / 2) for n in started]  # busy seconds: half of each count here


def test_the_scaler_reads_each_sidecar_and_counts_those_that_answer() -> None:
    """A sidecar that does not answer /demand (a refusal, a NetworkPolicy) adds no demand and is not
    counted as answering; the scaler sends no credential a pod's spec would have to carry."""
    import json

    from scaler.demand import DemandCollector

    def pod(ip: str) -> dict[str, object]:
        stamp = {"runtime": "r", "stamp": "v1", "servedName": "m", "sidecarPort": 8090, "runtimePort": 8000}
        return {
            "metadata": {"name": ip, "namespace": "ns", "annotations": {"hearth.dev/rendered": json.dumps(stamp)}},
            "spec": {"containers": [{"name": "model"}, {"name": "hearth-gateway"}]},
            "status": {"podIP": ip},
        }

    def answer(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        if request.url.host == "10.0.0.2":
            return httpx.Response(403)
        return httpx.Response(200, json={"inFlight": 2})

    async def run() -> tuple[int, int]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            collector = DemandCollector(client, lambda: [])
            demand, _ = await collector.collect({"ns/m": [pod("10.0.0.1"), pod("10.0.0.2")]})
            return demand["ns/m"].sidecar_in_flight, demand["ns/m"].answering_pods

    assert asyncio.run(run()) == (2, 1)
