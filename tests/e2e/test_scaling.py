"""0 -> 1 -> N -> 0 on the real cluster: Hearth's scaler, front doors and webhooks in pods, models on real kubelets."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import threading
import time
from typing import Any

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devcluster.cluster import Cluster
from devcluster.models import simulated_model
from policies import CONDITION, sidecar_url, status_of
from tests.e2e.conftest import (
    MESSAGES,
    apply,
    expected,
    get_json,
    phase,
    replicas,
    sdk,
    wait_for,
    webhook_runtimes,
)
from tests.support import ROOT

pytestmark = pytest.mark.e2e


def model_deployment(namespace: str, name: str, **options: Any) -> dict[str, Any]:
    return simulated_model(namespace, name, **options)


def client(cluster: Cluster, namespace: str) -> openai.OpenAI:
    return sdk(cluster, namespace)


class PhaseRecorder:
    """Polls the phase label in the background and keeps the sequence of distinct values seen, from the
    phase before the block to the phase after it."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.seen: list[str] = []
        self._where = (cluster, namespace, name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _now(self) -> str | None:
        return phase(*self._where)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._record(self._now())

    def _record(self, current: str | None) -> None:
        if current and (not self.seen or self.seen[-1] != current):
            self.seen.append(current)

    def __enter__(self) -> PhaseRecorder:
        self._record(self._now())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._record(self._now())


def stream_text(cluster: Cluster, model: str, tokens: int, namespace: str | None = None) -> str:
    """Streamed with the key of `namespace` (by default the one `model` names as namespace/name)."""
    chunks = client(cluster, namespace or model.split("/", 1)[0]).chat.completions.create(
        model=model, messages=MESSAGES, stream=True, max_tokens=tokens
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_idle_model_stays_at_zero(cluster: Cluster, namespace: str) -> None:
    apply(cluster, model_deployment(namespace, "idle"))
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "idle") == "ScaledToZero", timeout=30)
    seen = scaler_ticks(cluster)
    wait_for("five more passes of the leading scaler", lambda: scaler_ticks(cluster) >= seen + 5, timeout=60)
    assert replicas(cluster, namespace, "idle") == 0
    assert get_json(cluster, "pods", "-n", namespace, "-l", "app=idle")["items"] == []
    status = subprocess.run(
        [*_hearth(), "status", "-n", namespace, f"--kubeconfig={cluster.layout.kubeconfig}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert status.splitlines()[0].split()[:7] == ["NAME", "KIND", "PHASE", "RUNTIME", "REPLICAS", "DEMAND", "PREWARMED"]
    assert status.splitlines()[1].split()[:6] == ["idle", "Deployment", "ScaledToZero", "sim-nvidia", "0/0", "0"]


def _hearth() -> list[str]:
    import sys

    return [sys.executable, "-m", "hearth"]


def test_zero_to_one_streams_through_a_cold_start(cluster: Cluster, namespace: str) -> None:
    apply(cluster, model_deployment(namespace, "cold", startup="2s"))
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "cold") == "ScaledToZero", timeout=30)
    generation = get_json(cluster, "deploy", "cold", "-n", namespace)["metadata"]["generation"]
    with PhaseRecorder(cluster, namespace, "cold") as phases:
        text = stream_text(cluster, f"{namespace}/cold", 8)
        wait_for("phase Ready", lambda: phase(cluster, namespace, "cold") == "Ready", timeout=30)
    assert text == expected(8)
    assert replicas(cluster, namespace, "cold") == 1
    order = [p for p in phases.seen if p in ("ScaledToZero", "Activating", "Ready")]
    assert order[:3] == ["ScaledToZero", "Activating", "Ready"], phases.seen
    events = get_json(cluster, "events", "-n", namespace)["items"]
    assert any(e["reason"] == "Activated" and e["involvedObject"]["name"] == "cold" for e in events)
    # Only the one scale write moved the generation: the phase and status writes of the whole cold start
    # did not (an annotation would have, and been copied onto the ReplicaSet as well).
    serving = lambda: status_of(get_json(cluster, "deploy", "cold", "-n", namespace)).get("ready") == "1"  # noqa: E731
    wait_for("the status condition says 1 ready", serving, timeout=30)
    deployment = get_json(cluster, "deploy", "cold", "-n", namespace)
    assert deployment["metadata"]["generation"] == generation + 1
    assert deployment["status"]["observedGeneration"] == generation + 1
    assert "hearth.dev/status" not in (deployment["metadata"].get("annotations") or {})
    assert {c["type"] for c in deployment["status"]["conditions"]} >= {"Available", "Progressing", CONDITION}
    for replicaset in get_json(cluster, "rs", "-n", namespace, "-l", "app=cold")["items"]:
        assert "hearth.dev/status" not in (replicaset["metadata"].get("annotations") or {})


def test_a_deployment_whose_pods_are_refused_fails_its_request_at_once_without_retries(
    cluster: Cluster, namespace: str
) -> None:
    """Pinned to a runtime that does not exist, the model's pods are refused by the webhook: the held
    request fails with model_start_failed and x-should-retry: false, so the SDK (with its default two
    retries) raises at once instead of retrying for a minute."""
    refused = model_deployment(namespace, "refused")
    refused["spec"]["template"]["metadata"]["annotations"]["hearth.dev/runtime"] = "no-such-runtime"
    apply(cluster, refused)
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "refused") == "ScaledToZero", timeout=30)
    before = get_json(cluster, "deploy", "refused", "-n", namespace)["status"].get("conditions") or []
    assert "ReplicaFailure" not in {c["type"] for c in before}  # nothing was refused yet: the request starts it
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(cluster, namespace, retries=2).chat.completions.create(
            model=f"{namespace}/refused", messages=MESSAGES, max_tokens=2
        )
    took = time.monotonic() - started
    assert caught.value.status_code == 503 and "no-such-runtime" in caught.value.message, caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert took < 20, took  # the SDK's two retries alone would have waited 60 s (Retry-After: 30)
    print(f"refused Deployment: the SDK raised {took:.2f} s after its request")
    wait_for("phase Degraded", lambda: phase(cluster, namespace, "refused") == "Degraded", timeout=30)
    status = status_of(get_json(cluster, "deploy", "refused", "-n", namespace))
    assert status["desired"] == "1" and status["ready"] == "0"


def test_load_above_target_scales_out_and_idle_goes_back_to_zero(cluster: Cluster, namespace: str) -> None:
    apply(cluster, model_deployment(namespace, "burst", max_replicas=3, target=2, delay="3s"))
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "burst") == "ScaledToZero", timeout=30)
    seen_replicas: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.3):
            seen_replicas.append(replicas(cluster, namespace, "burst"))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # 8 streams of ~4 s: demand 8 over target 2
        texts = list(pool.map(lambda _: stream_text(cluster, f"{namespace}/burst", 200), range(8)))
    stop.set()
    watcher.join()
    assert texts == [expected(200)] * 8
    assert max(seen_replicas) == 3  # within max-replicas
    wait_for("scale back to zero", lambda: replicas(cluster, namespace, "burst") == 0, timeout=60)
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "burst") == "ScaledToZero", timeout=30)


def test_an_open_stream_survives_its_pod_being_scaled_away(cluster: Cluster, namespace: str) -> None:
    apply(cluster, model_deployment(namespace, "drain", max_replicas=1, delay="60s"))
    assert stream_text(cluster, f"{namespace}/drain", 2) == expected(2)  # activate; now at 1 replica
    result: list[str] = []
    streaming = threading.Thread(target=lambda: result.append(stream_text(cluster, f"{namespace}/drain", 150)))
    streaming.start()  # ~3 s of tokens
    found = get_json(cluster, "pods", "-n", namespace, "-l", "app=drain")["items"][0]
    sidecar = sidecar_url(found)
    assert sidecar is not None
    wait_for(
        "the stream to reach the pod",
        lambda: httpx.get(f"{sidecar}/demand").json()["inFlight"] == 1,
        30,
        0.05,
    )
    pod = found["metadata"]["name"]
    cluster.kubectl("delete", "pod", pod, "-n", namespace, "--wait=false")  # as a scale-down would
    streaming.join(timeout=60)
    assert result == [expected(150)]


def test_no_request_is_lost_across_three_cycles(cluster: Cluster, namespace: str) -> None:
    apply(cluster, model_deployment(namespace, "cycles", max_replicas=3, target=2, delay="2s"))
    sent = completed = 0
    for cycle in range(3):
        wait_for(f"cycle {cycle}: zero replicas", lambda: replicas(cluster, namespace, "cycles") == 0, timeout=90)

        def one(index: int) -> bool:
            if index % 2:
                reply = client(cluster, namespace).chat.completions.create(
                    model=f"{namespace}/cycles", messages=MESSAGES, max_tokens=20
                )
                return reply.choices[0].message.content == expected(20)
            return stream_text(cluster, f"{namespace}/cycles", 40) == expected(40)

        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            outcomes = list(pool.map(one, range(10)))
        sent += len(outcomes)
        completed += sum(outcomes)
    assert (sent, completed) == (30, 30)


def test_rbac_is_least_privilege(cluster: Cluster, namespace: str) -> None:
    def can(who: str, *what: str) -> bool:
        result = cluster.kubectl("auth", "can-i", *what, f"--as=system:serviceaccount:hearth-system:{who}", check=False)
        return result.stdout.strip() == "yes"

    assert can("hearth-scaler", "update", "deployments", "--subresource=scale", "-n", "ai")
    assert can("hearth-scaler", "patch", "deployments", "-n", "ai")
    assert can("hearth-scaler", "patch", "deployments", "--subresource=status", "-n", "ai")
    assert not can("hearth-scaler", "update", "deployments", "--subresource=status", "-n", "ai")
    assert can("hearth-scaler", "create", "events", "-n", "ai")
    assert can("hearth-scaler", "update", "leases", "-n", "hearth-system")
    assert not can("hearth-scaler", "update", "leases", "-n", "kube-system")
    assert not can("hearth-scaler", "get", "secrets", "-n", "ai")
    assert not can("hearth-scaler", "delete", "deployments", "-n", "ai")
    assert not can("hearth-scaler", "create", "pods", "-n", "ai")
    assert can("hearth-gateway", "watch", "pods", "-n", "ai")
    assert not can("hearth-gateway", "patch", "deployments", "-n", "ai")
    # The front door (facing the internet) reads no Secret cluster-wide; it lists key Secrets (labelled; RBAC
    # cannot say so) only where a namespace's admin applied manifests/tenant/, and never gets one by name.
    assert not can("hearth-gateway", "list", "secrets", "--all-namespaces")
    assert not can("hearth-gateway", "list", "secrets", "-n", namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "manifests" / "tenant"))
    assert can("hearth-gateway", "watch", "secrets", "-n", namespace)
    assert not can("hearth-gateway", "get", "secrets", "-n", namespace)
    assert not can("hearth-gateway", "update", "secrets", "-n", namespace)
    assert not can("hearth-gateway", "list", "secrets", "-n", "kube-system")
    assert can("hearth-gateway", "create", "tokenreviews") and can("hearth-scaler", "create", "tokenreviews")
    assert not can("hearth-webhook", "create", "tokenreviews")
    assert can("hearth-webhook", "watch", "inferenceruntimes")
    assert can("hearth-webhook", "watch", "pods", "-n", "ai") and can("hearth-webhook", "watch", "nodes")  # capacity
    assert not can("hearth-webhook", "get", "pods", "-n", "ai") and not can("hearth-webhook", "patch", "nodes")
    assert can("hearth-scaler", "watch", "nodes") and not can("hearth-scaler", "patch", "nodes")
    assert not can("hearth-webhook", "*", "*", "--all-namespaces")
    # The record of model names: the scaler writes only its own ConfigMap, the others read; no tenant writes.
    names = ("configmaps/hearth-model-names", "-n", "hearth-system")
    assert can("hearth-scaler", "update", *names)
    assert not can("hearth-scaler", "update", "configmaps/other", "-n", "hearth-system")
    assert not can("hearth-scaler", "update", "configmaps", "-n", "ai")
    assert can("hearth-gateway", "watch", "configmaps", "-n", "hearth-system")
    assert can("hearth-webhook", "watch", "configmaps", "-n", "hearth-system")
    assert not can("hearth-gateway", "update", *names) and not can("hearth-webhook", "update", *names)
    assert not can("hearth-gateway", "watch", "configmaps", "-n", "ai")


def lease_holder(cluster: Cluster) -> str:
    return cluster.kubectl(
        "get", "lease", "hearth-scaler", "-n", "hearth-system", "-o", "jsonpath={.spec.holderIdentity}"
    ).stdout.strip()


def scaler_ticks(cluster: Cluster) -> float:
    """Scaling passes made so far (only the leader makes them), summed over the scaler pods."""
    total = 0.0
    for pod in cluster.hearth_pods("hearth-scaler"):
        text = httpx.get(f"http://{pod['status']['podIP']}:8081/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            total += sum(s.value for s in family.samples if s.name == "hearth_scaler_tick_seconds_count")
    return total


def scaler_status(pod: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = httpx.get(f"http://{pod['status']['podIP']}:8081/status", timeout=5).json()
    return status


def test_leader_failover_under_load(cluster: Cluster, namespace: str) -> None:
    """kill -9 of the leading scaler's process mid-load, then the deletion of its pod: no request is lost,
    a live scaler always takes over, and two scalers never write at the same time."""
    apply(cluster, model_deployment(namespace, "failover", max_replicas=3, target=2, delay="2s"))
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "failover") == "ScaledToZero", timeout=30)
    pods = {p["metadata"]["name"]: p for p in cluster.hearth_pods("hearth-scaler")}
    leader = wait_for("a leader", lambda: lease_holder(cluster) or None, timeout=30)
    (standby,) = set(pods) - {leader}
    assert scaler_status(pods[leader])["leader"] is True
    assert scaler_status(pods[standby])["leader"] is False
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(stream_text, cluster, f"{namespace}/failover", 150) for _ in range(6)]
        key = f"{namespace}/failover"
        wait_for(
            "the leader to count all six requests",
            lambda: (scaler_status(pods[leader])["models"].get(key) or {}).get("demand", 0) >= 6,
            timeout=60,
            every=0.1,
        )
        for pid in cluster.container_pids(pods[leader], "scaler"):
            os.kill(pid, signal.SIGKILL)  # the leader dies mid-load
        texts = [f.result(timeout=120) for f in futures]
    assert texts == [expected(150)] * 6
    # The kubelet restarts the killed container at once; under the same identity it renews its own Lease
    # (the process that held it is dead), or the standby takes it when it expires: either way one leader.
    wait_for("a live leader to scale back to zero", lambda: replicas(cluster, namespace, "failover") == 0, timeout=90)
    holder = lease_holder(cluster)
    current = {p["metadata"]["name"]: p for p in cluster.hearth_pods("hearth-scaler")}
    assert scaler_status(current[holder])["leader"] is True
    assert [scaler_status(p)["leader"] for n, p in current.items() if n != holder] == [False]
    # A planned loss: the leader's pod is deleted; it hands the Lease back as it stops, and a live scaler
    # (the other replica, or the pod that replaces the deleted one) takes it.
    cluster.kubectl("delete", "pod", holder, "-n", "hearth-system", "--wait=false")

    def new_leader() -> str | None:
        name = lease_holder(cluster)
        return name if name and name != holder else None

    successor = wait_for("another scaler to lead", new_leader, timeout=45)
    assert stream_text(cluster, f"{namespace}/failover", 5) == expected(5)  # activated by the new leader
    wait_for("the new leader to scale to zero", lambda: replicas(cluster, namespace, "failover") == 0, timeout=60)
    events = [
        e
        for e in get_json(cluster, "events", "-n", namespace)["items"]
        if e["involvedObject"]["name"] == "failover" and e.get("reportingComponent") == "hearth-scaler"
    ]
    events.sort(key=lambda e: e.get("eventTime") or e["lastTimestamp"])
    writers = [e["reportingInstance"] for e in events]
    assert writers[0] == leader and writers[-1] == successor
    switch = writers.index(successor)
    assert holder not in writers[switch:], f"both scalers wrote: {writers}"
    cluster.wait_hearth_ready(120)


def all_know(answers: list[str], runtime: str) -> bool:
    return bool(answers) and all(runtime in answer for answer in answers)


def test_everything_survives_an_apiserver_restart(cluster: Cluster, namespace: str) -> None:
    apply(cluster, model_deployment(namespace, "restart", delay="2s"))
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "restart") == "ScaledToZero", timeout=30)
    cluster.api_key(namespace)  # the namespace's key exists before the restart, as a user's would
    cluster.restart("kube-apiserver")  # every watch (webhooks, front doors, scalers, kubelets) breaks and resumes
    assert stream_text(cluster, f"{namespace}/restart", 6) == expected(6)  # 0 -> 1 through the restart
    wait_for("back to zero", lambda: replicas(cluster, namespace, "restart") == 0, timeout=60)
    # An object created after the restart is seen by the webhook's watch: a runtime applied now renders pods.
    runtime = yaml.safe_load(cluster.kubectl("get", "inferenceruntime", "sim-nvidia", "-o", "yaml").stdout)
    runtime["metadata"] = {"name": "sim-after-restart"}
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(runtime))
    pinned = model_deployment(namespace, "pinned", delay="2s")
    pinned["spec"]["template"]["metadata"]["annotations"]["hearth.dev/runtime"] = "sim-after-restart"
    wait_for(
        "every webhook to see the new runtime",
        lambda: all_know(webhook_runtimes(cluster), "sim-after-restart"),
        timeout=30,
    )
    apply(cluster, pinned)
    assert stream_text(cluster, f"{namespace}/pinned", 3) == expected(3)
    cluster.kubectl("delete", "inferenceruntime", "sim-after-restart")


def test_every_pods_logs_survive_the_other_kubelets_garbage_collection(cluster: Cluster, namespace: str) -> None:
    """Each kubelet collects the log folders of pods it does not run (every minute): with a shared
    /var/log/pods, the nodes deleted each other's logs. By this test the session is minutes old."""
    model = model_deployment(namespace, "logs")
    model["metadata"]["annotations"]["hearth.dev/min-replicas"] = "1"
    apply(cluster, model)
    wait_for("phase Ready", lambda: phase(cluster, namespace, "logs") == "Ready", timeout=60)
    pods = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in get_json(cluster, "pods", "-A")["items"]]
    for pod_namespace, name in pods:
        if pod_namespace.startswith("e2e-") and pod_namespace != namespace:
            continue  # other tests' pods may be going away
        result = cluster.kubectl("logs", "-n", pod_namespace, name, "--all-containers", "--tail=1", check=False)
        assert result.returncode == 0, f"{pod_namespace}/{name}: {result.stderr}"


def test_a_kept_deployment_runs_as_written_and_scales_from_zero(cluster: Cluster, namespace: str) -> None:
    """Keep mode on the real cluster: the user's own server (here the simulator, as an image and command of
    the user's) runs as written; Hearth only puts its sidecar in front, and the model wakes from zero on a
    request that names it by its alias."""
    command = ["hearth", "dev", "simulator", "--port=9000", "--served-model-name=Org/Kept-Model-1B"]
    kept: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "kept",
            "namespace": namespace,
            "labels": {"hearth.dev/enabled": "true"},
            "annotations": {"hearth.dev/scale-down-delay": "3s"},
        },
        "spec": {
            "selector": {"matchLabels": {"app": "kept"}},
            "template": {
                "metadata": {
                    "labels": {"app": "kept", "hearth.dev/enabled": "true"},
                    "annotations": {"hearth.dev/served-name": "Org/Kept-Model-1B,kept-alias"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": cluster.image,
                            "command": [*command, "--startup-duration=1s"],
                            "ports": [{"containerPort": 9000}],
                            "readinessProbe": {"httpGet": {"path": "/health", "port": 9000}, "periodSeconds": 1},
                        }
                    ]
                },
            },
        },
    }
    apply(cluster, kept)
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "kept") == "ScaledToZero", timeout=30)
    assert stream_text(cluster, "kept-alias", 5, namespace) == expected(5)  # an alias reaches it, from zero
    (pod,) = cluster.live_pods(namespace, "app=kept")
    server = next(c for c in pod["spec"]["containers"] if c["name"] == "server")
    assert server["image"] == cluster.image and server["command"] == [*command, "--startup-duration=1s"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["server", "hearth-gateway"]
    assert stream_text(cluster, f"{namespace}/kept", 3) == expected(3)  # and its namespace/name
    wait_for("back to zero", lambda: replicas(cluster, namespace, "kept") == 0, timeout=60)
