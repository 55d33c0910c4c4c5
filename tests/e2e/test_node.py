"""What users install is what runs: real kubelets with containerd, Hearth's own image from its own
manifests with the shipped replica counts, and Hearth surviving the loss of any one of its pods."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import threading
import time
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devcluster.build import CONTAINERD_VERSION, KUBERNETES_VERSION
from devcluster.cluster import HEARTH_COMPONENTS, Cluster
from devcluster.models import simulated_model
from tests.e2e.conftest import (
    MESSAGES,
    apply,
    auth,
    expected,
    get_json,
    phase,
    ready_pods,
    replicas,
    sdk,
    wait_for,
)

pytestmark = pytest.mark.e2e


def test_nodes_are_real_kubelets_with_containerd(cluster: Cluster) -> None:
    nodes = get_json(cluster, "nodes")["items"]
    assert {n["metadata"]["name"] for n in nodes} == {"gpu-node-0", "ascend-node-0"}
    for node in nodes:
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == KUBERNETES_VERSION
        assert info["containerRuntimeVersion"] == f"containerd://{CONTAINERD_VERSION.lstrip('v')}"
        assert info["kubeProxyVersion"] in ("", KUBERNETES_VERSION)  # deprecated field, may be empty
    gpu = next(n for n in nodes if n["metadata"]["name"] == "gpu-node-0")
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "4"  # from the device plugin, not a patch
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in gpu["spec"]["taints"]
    wide = cluster.kubectl("get", "nodes", "-o", "wide").stdout
    assert wide.count(f"containerd://{CONTAINERD_VERSION.lstrip('v')}") == 2


def test_hearth_runs_from_its_own_image_with_the_shipped_replicas(cluster: Cluster) -> None:
    assert re.fullmatch(r"localhost/hearth:[0-9a-f]{12}", cluster.image)
    for component in HEARTH_COMPONENTS:
        pods = cluster.hearth_pods(component)
        assert len(pods) == 2, component  # manifests/ ships 2 of each
        for pod in pods:
            assert pod["status"]["phase"] == "Running"
            (container,) = pod["status"]["containerStatuses"]
            assert container["image"] == cluster.image
            assert container["containerID"].startswith("containerd://")
            assert pod["spec"]["securityContext"]["runAsUser"] == 65532


def test_killing_a_webhook_process_loses_no_pod(cluster: Cluster, namespace: str) -> None:
    """kill -9 of one webhook replica's process, then pods created at once. Until the kubelet reports the
    container dead and its endpoint is withdrawn (about a second), the apiserver may still pick that
    address: the call is refused, the pod webhook fails closed, and the ReplicaSet controller retries, so
    the pod is created a moment later, rendered, never unrendered and never lost. Once the endpoint is
    gone, and again once the restarted replica is back, every call is answered."""
    names = ["m0", "m1"]  # 2 then 4 pods: gpu-node-0 has 4 GPUs
    for name in names:
        apply(cluster, simulated_model(namespace, name, delay="10m"))  # at zero; the scaler leaves them be
    wait_for("the Deployments at zero", lambda: all(replicas(cluster, namespace, n) == 0 for n in names))
    victim = cluster.hearth_pods("hearth-webhook")[0]
    address = f"{victim['status']['podIP']}:8443"
    for pid in cluster.container_pids(victim, "webhook"):
        os.kill(pid, signal.SIGKILL)
    # The scale subresource is not admitted by Hearth; the pods the ReplicaSets now create are.
    cluster.kubectl("scale", "deploy", *names, "-n", namespace, "--replicas=1")
    wait_for("m0 and m1 Ready", lambda: all(ready(cluster, namespace, n) for n in names), timeout=120)
    refused = failed_creates(cluster, namespace)
    assert all(address in m and "connection refused" in m for m, _ in refused), refused  # only the dead address
    for pod in cluster.pods(namespace, "hearth.dev/enabled=true"):
        assert "hearth.dev/rendered" in pod["metadata"]["annotations"]  # every pod went through the webhook
    uid = victim["metadata"]["uid"]
    restarted = next(p for p in cluster.hearth_pods("hearth-webhook") if p["metadata"]["uid"] == uid)
    assert restarted["status"]["containerStatuses"][0]["restartCount"] >= 1  # it was really killed
    cluster.wait_hearth_ready(120)
    cluster.kubectl("scale", "deploy", *names, "-n", namespace, "--replicas=2")
    wait_for("two Ready pods each", lambda: all(ready(cluster, namespace, n, 2) for n in names), timeout=120)
    assert failed_creates(cluster, namespace) == refused  # with both replicas up, nothing is refused


def test_deleting_a_webhook_pod_refuses_nothing(cluster: Cluster, namespace: str) -> None:
    """`kubectl delete pod` of a webhook replica while pods are created: its endpoint is withdrawn as it
    starts terminating, and its preStop pause keeps it answering calls already on their way."""
    names = ["d0", "d1"]
    for name in names:
        apply(cluster, simulated_model(namespace, name, delay="10m"))
    wait_for("the Deployments at zero", lambda: all(replicas(cluster, namespace, n) == 0 for n in names))
    victim = cluster.hearth_pods("hearth-webhook")[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", victim, "-n", "hearth-system", "--wait=false")
    cluster.kubectl("scale", "deploy", *names, "-n", namespace, "--replicas=1")
    wait_for("d0 and d1 Ready", lambda: all(ready(cluster, namespace, n) for n in names), timeout=120)
    assert failed_creates(cluster, namespace) == []
    cluster.wait_hearth_ready(120)


def failed_creates(cluster: Cluster, namespace: str) -> list[tuple[str, int]]:
    """Each refused pod creation's message, with how many times it was seen (repeats bump the count)."""
    events = get_json(cluster, "events", "-n", namespace)["items"]
    return sorted((e["message"], int(e.get("count") or 1)) for e in events if e["reason"] == "FailedCreate")


def ready(cluster: Cluster, namespace: str, app: str, count: int = 1) -> bool:
    return len(ready_pods(cluster, namespace, app) or []) >= count


def stream(client: openai.OpenAI, model: str, tokens: int) -> str:
    chunks = client.chat.completions.create(model=model, messages=MESSAGES, stream=True, max_tokens=tokens)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_deleting_a_front_door_pod_loses_no_request(cluster: Cluster, namespace: str) -> None:
    """`kubectl delete pod` of a front door while streams flow through the Service: the pod stays in
    service through its preStop pause, finishes its open streams, and new requests go to the other."""
    model = simulated_model(namespace, "fd")
    model["metadata"]["annotations"]["hearth.dev/min-replicas"] = "1"
    apply(cluster, model)
    wait_for("fd Ready", lambda: ready(cluster, namespace, "fd"), timeout=90)
    client = sdk(cluster, namespace, timeout=60)
    victim = cluster.hearth_pods("hearth-gateway")[0]["metadata"]["name"]
    results: list[str] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        text = stream(client, f"{namespace}/fd", 100)  # ~2 s each
        with lock:
            results.append(text)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        first = [pool.submit(one, i) for i in range(6)]
        time.sleep(0.5)
        cluster.kubectl("delete", "pod", victim, "-n", "hearth-system", "--wait=false")
        later = [pool.submit(one, i) for i in range(6, 18)]
        for future in first + later:
            future.result(timeout=120)
    assert results == [expected(100)] * 18
    cluster.wait_hearth_ready(120)


def test_a_killed_front_door_is_routed_around(cluster: Cluster, namespace: str) -> None:
    """kill -9 of a front door's process: its open streams die with it (nothing can save them), but no
    new request is lost: an OpenAI client's own retries reach the other replica."""
    model = simulated_model(namespace, "fk")
    model["metadata"]["annotations"]["hearth.dev/min-replicas"] = "1"
    apply(cluster, model)
    wait_for("fk Ready", lambda: ready(cluster, namespace, "fk"), timeout=90)
    client = sdk(cluster, namespace, retries=3, timeout=60)  # its key taken by both front doors first
    victim = cluster.hearth_pods("hearth-gateway")[0]
    for pid in cluster.container_pids(victim, "gateway"):
        os.kill(pid, signal.SIGKILL)
    texts = [stream(client, f"{namespace}/fk", 5) for _ in range(20)]
    assert texts == [expected(5)] * 20
    cluster.wait_hearth_ready(120)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a sample over the children whose labels include `labels`, parsed by prometheus_client."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_held_requests_at_each_front_door_activate_and_demand_is_their_sum(cluster: Cluster, namespace: str) -> None:
    """Two front doors, two scalers: a request held at either door gets its activation accepted by the
    leader (wherever the Service would have sent the push), and the scaler's demand counts both doors."""
    doors = sorted(cluster.hearth_pods("hearth-gateway"), key=lambda p: p["metadata"]["name"])
    assert len(doors) == 2
    for name in ("sum-a", "sum-b"):
        apply(cluster, simulated_model(namespace, name, max_replicas=3, target=1, startup="120s"))
    wait_for("both at zero", lambda: all(phase(cluster, namespace, n) == "ScaledToZero" for n in ("sum-a", "sum-b")))
    stop = threading.Event()
    key = auth(cluster, namespace)

    def hold(door: dict[str, Any], model: str) -> None:
        url = f"http://{door['status']['podIP']}:8080/v1/chat/completions"
        body = {"model": f"{namespace}/{model}", "messages": MESSAGES, "stream": True, "max_tokens": 3}
        try:
            timeout = httpx.Timeout(5, read=None)
            with httpx.stream("POST", url, json=body, headers=key, timeout=timeout) as response:
                for _ in response.iter_lines():
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            return

    threads = [
        threading.Thread(target=hold, args=(doors[0], "sum-a"), daemon=True),  # door 0 wakes sum-a
        threading.Thread(target=hold, args=(doors[1], "sum-b"), daemon=True),  # door 1 wakes sum-b
        threading.Thread(target=hold, args=(doors[1], "sum-a"), daemon=True),  # and holds one more for sum-a
    ]
    try:
        for thread in threads:
            thread.start()
            time.sleep(0.3)
        wait_for(
            "each door to have its push accepted by the leading scaler",
            lambda: (
                accepted_pushes(doors[0], f"{namespace}/sum-a") >= 1
                and accepted_pushes(doors[1], f"{namespace}/sum-b") >= 1
            ),
            timeout=10,
        )
        # sum-a has one request held at each door: demand 2, target 1, so the scaler asks for 2 replicas.
        wait_for("sum-a at 2 replicas", lambda: replicas(cluster, namespace, "sum-a") == 2, timeout=15)
        assert replicas(cluster, namespace, "sum-b") == 1
    finally:
        stop.set()
        cluster.kubectl("delete", "deploy", "sum-a", "sum-b", "-n", namespace, "--wait=false")


def accepted_pushes(door: dict[str, Any], model: str) -> float:
    text = httpx.get(f"http://{door['status']['podIP']}:9090/metrics", timeout=5).text
    return metric(text, "hearth_gateway_activation_pushes_total", model=model, outcome="accepted")
