"""The node-local model cache on the real cluster: the dev runtimes cache hf:// models per node
(devcluster/runtimes.yaml), the dev cluster's hub serves generated models to the real hub client, each node
bind-mounts its own cache folder, and the node agents label nodes and evict. The hub counts every request,
which is how "asks the hub nothing" is proven; each test fetches a model of its own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from devcluster.cluster import Cluster
from devcluster.hub import generate_model
from devcluster.models import simulated_model
from policies.modelcache import node_label
from tests.e2e.conftest import MESSAGES, apply, get_json, ready_pods, replicas, sdk, wait_for

pytestmark = pytest.mark.e2e
NODE = "gpu-node-0"  # where sim-nvidia models run


def hub(cluster: Cluster) -> dict[str, int]:
    counts: dict[str, int] = httpx.get(f"{cluster.layout.hub_url}/_hub/requests", timeout=5).json()
    return counts


def downloads(cluster: Cluster, repo: str) -> int:
    return hub(cluster).get(f"{repo} download", 0)


def cache_folder(cluster: Cluster, node: str = NODE) -> Path:
    """The node's own cache folder (bind-mounted at the runtimes' cache.hostPath inside the node)."""
    return cluster.layout.nodes / node / "model-cache"


def node_labels(cluster: Cluster, node: str = NODE) -> dict[str, str]:
    labels: dict[str, str] = get_json(cluster, "node", node)["metadata"].get("labels") or {}
    return labels


def fetch_logs(cluster: Cluster, namespace: str, app: str) -> list[str]:
    pods = cluster.pods(namespace, f"app={app}")
    return [cluster.kubectl("logs", "-n", namespace, p["metadata"]["name"], "-c", "hearth-fetch").stdout for p in pods]


def ask(cluster: Cluster, namespace: str, model: str) -> str:
    answer = sdk(cluster, namespace).chat.completions.create(model=model, messages=MESSAGES, max_tokens=3)
    return str(answer.choices[0].message.content)


def until_zero(cluster: Cluster, namespace: str, name: str) -> None:
    wait_for(f"{name} at zero", lambda: replicas(cluster, namespace, name) == 0 or None, timeout=90)
    wait_for(f"{name}'s pods gone", lambda: not cluster.pods(namespace, f"app={name}") or None, timeout=90)


def test_a_cold_start_downloads_once_and_a_cold_start_on_the_warm_node_asks_the_hub_nothing(
    cluster: Cluster, namespace: str
) -> None:
    repo = "hearth-dev/cold"
    apply(cluster, simulated_model(namespace, "cold", delay="2s", model=f"hf://{repo}"))
    before = downloads(cluster, repo)
    assert ask(cluster, namespace, "cold")
    entry = cache_folder(cluster) / cluster.cache_key(repo)
    files = [p for p in entry.iterdir() if p.is_file()]
    assert downloads(cluster, repo) - before == len(files) >= 4  # every file once: config, tokenizer, shards
    (log,) = fetch_logs(cluster, namespace, "cold")
    assert "download done" in log
    pod = cluster.pods(namespace, "app=cold")[0]
    assert pod["spec"]["nodeName"] == NODE
    model = next(c for c in pod["spec"]["containers"] if c["name"] == "model")
    assert f"--model=/var/lib/hearth/models/{cluster.cache_key(repo)}" in model["args"]
    label = node_label(cluster.cache_key(repo))
    wait_for("the node agent's label", lambda: node_labels(cluster).get(label) == "true" or None, timeout=30)

    until_zero(cluster, namespace, "cold")
    asked = hub(cluster)["total"]
    assert ask(cluster, namespace, "cold")
    assert hub(cluster)["total"] == asked  # not one request: no info, no tree, no HEAD
    (log,) = fetch_logs(cluster, namespace, "cold")
    assert "the hub is not asked" in log
    preferred = pod["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred[0]["preference"]["matchExpressions"][0]["key"] == label


def test_two_pods_starting_at_once_on_one_node_download_once(cluster: Cluster, namespace: str) -> None:
    repo = "hearth-dev/twin"
    twin = simulated_model(namespace, "twin", model=f"hf://{repo}", annotations={"hearth.dev/min-replicas": "2"})
    twin["metadata"]["annotations"]["hearth.dev/max-replicas"] = "2"
    before = hub(cluster)
    apply(cluster, twin)
    wait_for("both pods ready", lambda: len(ready_pods(cluster, namespace, "twin") or []) == 2 or None, 120)
    pods = cluster.pods(namespace, "app=twin")
    assert {p["spec"]["nodeName"] for p in pods} == {NODE}
    files = [p for p in (cache_folder(cluster) / cluster.cache_key(repo)).iterdir() if p.is_file()]
    after = hub(cluster)
    assert after[f"{repo} download"] - before.get(f"{repo} download", 0) == len(files)
    assert after[f"{repo} info"] - before.get(f"{repo} info", 0) == 1  # the second pod waited, then found it
    logs = " ".join(fetch_logs(cluster, namespace, "twin"))
    assert "download done" in logs and "the hub is not asked" in logs


def test_prewarm_fills_the_cache_before_the_first_request(cluster: Cluster, namespace: str) -> None:
    repo = "hearth-dev/prewarmed"
    label = node_label(cluster.cache_key(repo))
    apply(cluster, simulated_model(namespace, "warm", model=f"hf://{repo}", annotations={"hearth.dev/prewarm": "1"}))
    wait_for("the node labelled warm", lambda: node_labels(cluster).get(label) == "true" or None, timeout=90)
    assert replicas(cluster, namespace, "warm") == 0  # fetched while at zero
    jobs = get_json(cluster, "jobs", "-n", namespace)["items"]
    assert [j["metadata"]["annotations"]["cache.hearth.dev/node"] for j in jobs] == [NODE]

    def events() -> set[str] | None:
        listed = get_json(cluster, "events", "-n", namespace, "--field-selector", "involvedObject.name=warm")
        reasons = {e["reason"] for e in listed["items"]}
        return reasons if {"Prewarming", "Prewarmed"} <= reasons else None

    wait_for("Prewarming and Prewarmed Events", events, timeout=30)

    def status() -> str | None:
        conditions = get_json(cluster, "deploy", "warm", "-n", namespace)["status"].get("conditions") or []
        message = next((c["message"] for c in conditions if c["type"] == "hearth.dev/Serving"), "")
        return message if "prewarmed 1/1" in message else None

    wait_for("prewarmed 1/1 in the condition", status, timeout=30)
    asked = hub(cluster)["total"]
    assert ask(cluster, namespace, "warm")
    assert hub(cluster)["total"] == asked  # the first cold start found it on the node
    (log,) = fetch_logs(cluster, namespace, "warm")
    assert "the hub is not asked" in log


def test_a_corrupted_shard_is_detected_and_only_it_fetched_again(cluster: Cluster, namespace: str) -> None:
    repo = "hearth-dev/repair"
    apply(cluster, simulated_model(namespace, "repair", delay="2s", model=f"hf://{repo}"))
    assert ask(cluster, namespace, "repair")
    until_zero(cluster, namespace, "repair")
    shard = sorted((cache_folder(cluster) / cluster.cache_key(repo)).glob("*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: the hash tells
    shard.write_bytes(bytes(data))
    before = downloads(cluster, repo)
    assert ask(cluster, namespace, "repair")
    (log,) = fetch_logs(cluster, namespace, "repair")
    assert "damaged" in log and shard.name in log and "repair done" in log
    assert downloads(cluster, repo) - before == 1


@pytest.mark.parametrize(("scheme", "variable"), [("hf", "HF_TOKEN"), ("modelscope", "MODELSCOPE_API_TOKEN")])
def test_a_gated_or_private_model_without_access_fails_naming_the_secret(
    cluster: Cluster, namespace: str, scheme: str, variable: str
) -> None:
    cluster.kubectl("create", "secret", "generic", "hub-token", "-n", namespace, "--from-literal=token=nope")
    env = [{"name": variable, "valueFrom": {"secretKeyRef": {"name": "hub-token", "key": "token"}}}]
    apply(cluster, simulated_model(namespace, "gated", model=f"{scheme}://hearth-dev/gated-model", env=env))
    with pytest.raises(openai.APIStatusError) as refused:
        ask(cluster, namespace, "gated")
    assert refused.value.status_code == 503
    message = str(refused.value.message)
    assert "is gated or private" in message and 'Secret "hub-token"' in message, message


def test_eviction_removes_least_recently_used_models_and_keeps_those_in_use(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    models = {name: f"hearth-dev/{name}" for name in ("evict-a", "evict-b", "evict-c")}
    for name, repo in models.items():  # a and b go back to zero; c keeps running
        delay = "1h" if name == "evict-c" else "2s"
        apply(cluster, simulated_model(namespace, name, delay=delay, model=f"hf://{repo}"))
        assert ask(cluster, namespace, name)
        time.sleep(1.1)  # distinct last-use times
    for name in ("evict-a", "evict-b"):
        until_zero(cluster, namespace, name)
    labels = {name: node_label(cluster.cache_key(repo)) for name, repo in models.items()}
    # A runtime that shares the dev runtimes' cache folder with a tiny size: the agent takes the smallest.
    tiny = _tiny_cache_runtime(cluster)
    apply(cluster, tiny)
    try:
        root = cache_folder(cluster) / cluster.cache_key("hearth-dev")
        gone = ("evict-a", "evict-b")
        wait_for("a and b evicted", lambda: not any((root / name).exists() for name in gone) or None)
        assert (root / "evict-c" / "config.json").is_file()  # in use: kept, over the watermark or not

        def unlabelled() -> dict[str, str] | None:
            now = node_labels(cluster)
            return now if not any(labels[name] in now for name in gone) else None

        current = wait_for("labels follow", unlabelled, timeout=30)
        assert current.get(labels["evict-c"]) == "true"
        assert ask(cluster, namespace, "evict-c")  # still serving
    finally:
        cluster.kubectl("delete", "inferenceruntime", tiny["metadata"]["name"], check=False)


def _tiny_cache_runtime(cluster: Cluster) -> dict[str, Any]:
    runtime: dict[str, Any] = get_json(cluster, "inferenceruntime", "sim-nvidia")
    spec = runtime["spec"]
    spec["priority"] = -100  # never chosen over sim-nvidia
    spec["cache"] = {"hostPath": "/var/lib/hearth/models", "size": "1Mi", "highWatermarkPercent": 90}
    return {
        "apiVersion": runtime["apiVersion"],
        "kind": runtime["kind"],
        "metadata": {"name": "sim-tiny-cache"},
        "spec": spec,
    }


def test_pvc_models_and_the_users_own_hub_cache_keep_working(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    generate_model(tmp_path / "volume" / "qwen", 8, shards=2)
    pv_name = f"{namespace}-models"[:63]
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "hostPath": {"path": str(tmp_path / "volume"), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": "models"},
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "models", "namespace": namespace},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
            "volumeName": pv_name,
        },
    }
    apply(cluster, pv)
    try:
        apply(cluster, pvc)
        bound = lambda: get_json(cluster, "pvc", "models", "-n", namespace)["status"].get("phase") == "Bound" or None  # noqa: E731
        wait_for("the claim bound", bound, timeout=60)
        apply(cluster, simulated_model(namespace, "onpvc", model="pvc://models/qwen"))
        assert ask(cluster, namespace, "onpvc")
        pod = cluster.pods(namespace, "app=onpvc")[0]
        assert "initContainers" not in pod["spec"]  # nothing to fetch
        stats = httpx.get(f"http://{pod['status']['podIP']}:8000/sim/stats", timeout=5).json()
        assert stats["load"]["bytes"] >= 8 * 2**20  # the simulator loaded the claim's files

        own = simulated_model(namespace, "owncache", model="hf://hearth-dev/cold")
        spec = own["spec"]["template"]["spec"]
        spec["containers"][0]["volumeMounts"] = [{"name": "hf", "mountPath": "/root/.cache/huggingface"}]
        spec["volumes"] = [{"name": "hf", "emptyDir": {}}]
        apply(cluster, own)
        assert ask(cluster, namespace, "owncache")
        pod = cluster.pods(namespace, "app=owncache")[0]
        assert "initContainers" not in pod["spec"]  # the user's cache is used, not the node's
        model = next(c for c in pod["spec"]["containers"] if c["name"] == "model")
        assert {"name": "HF_HOME", "value": "/root/.cache/huggingface"} in model["env"]
    finally:
        cluster.kubectl("delete", "deploy", "--all", "-n", namespace, "--wait=true", check=False)
        cluster.kubectl("delete", "pvc", "models", "-n", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", pv_name, "--wait=false", check=False)
