"""The announcement's kind of model (modelscope://) in the node cache on the real cluster, reached through a
local PersistentVolume (`hearth cache volume`) from a namespace at Pod Security baseline, which refuses
host paths. (A private ModelScope model whose token does not reach it: test_model_cache.py.)"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.models import simulated_model
from policies.modelcache import node_label
from tests.e2e.conftest import apply, get_json, replicas, wait_for, webhook_runtimes
from tests.e2e.test_model_cache import ask, cache_folder, fetch_logs, hub, node_labels

pytestmark = pytest.mark.e2e
RUNTIME = "sim-claim"


def claim_runtime(cluster: Cluster) -> dict[str, Any]:
    """sim-nvidia with its node cache reached through the namespace's claim (never chosen unless pinned)."""
    runtime: dict[str, Any] = get_json(cluster, "inferenceruntime", "sim-nvidia")
    spec = runtime["spec"]
    spec["priority"] = -100
    spec["cache"]["volume"] = "PersistentVolumeClaim"
    return {"apiVersion": runtime["apiVersion"], "kind": runtime["kind"], "metadata": {"name": RUNTIME}, "spec": spec}


def refused(cluster: Cluster, pod: dict[str, Any]) -> str:
    result = apply(cluster, pod, "--dry-run=server", check=False)
    assert result.returncode != 0, pod
    return str(result.stderr)


def test_a_modelscope_model_prewarmed_through_a_local_volume_in_a_baseline_namespace(
    cluster: Cluster, namespace: str
) -> None:
    repo = "hearth-dev/ms-baseline"
    key = cluster.cache_key(repo, "modelscope")
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline")
    hearth = [sys.executable, "-m", "hearth", "cache", "volume", "-n", namespace, "--size=10Gi"]
    made = subprocess.run(hearth, capture_output=True, text=True, check=True).stdout
    cluster.kubectl("apply", "-f", "-", stdin=made)
    apply(cluster, claim_runtime(cluster))
    try:
        wait_for("the webhooks to know sim-claim", lambda: all(RUNTIME in r for r in webhook_runtimes(cluster)) or None)
        model = simulated_model(namespace, "msb", model=f"modelscope://{repo}", annotations={"hearth.dev/prewarm": "1"})
        model["spec"]["template"]["metadata"]["annotations"]["hearth.dev/runtime"] = RUNTIME
        apply(cluster, model)
        # The prewarm Job fetches through the claim (a baseline namespace admits it), and the agent sees it.
        wait_for("the node labelled warm", lambda: node_labels(cluster).get(node_label(key)) == "true" or None, 120)
        assert replicas(cluster, namespace, "msb") == 0
        (job,) = get_json(cluster, "jobs", "-n", namespace)["items"]
        assert job["spec"]["template"]["spec"]["volumes"] == [
            {"name": "hearth-node-cache", "persistentVolumeClaim": {"claimName": "hearth-model-cache"}}
        ]
        assert (cache_folder(cluster) / key / "config.json").is_file()  # the node's own folder, as with a host path
        files = [p for p in (cache_folder(cluster) / key).iterdir() if p.is_file()]
        assert hub(cluster).get(f"{repo} ms-download") == len(files)  # ModelScope's API, each file once

        asked = hub(cluster)["total"]
        assert ask(cluster, namespace, "msb")
        assert hub(cluster)["total"] == asked  # the cold start found it on the node
        (log,) = fetch_logs(cluster, namespace, "msb")
        assert "the hub is not asked" in log
        (pod,) = cluster.live_pods(namespace, "app=msb")
        assert not [v for v in pod["spec"]["volumes"] if "hostPath" in v]

        # The namespace is at baseline: a host path is refused by Pod Security; the claim mounted writable
        # (or under another name) by Hearth's admission policy.
        image = cluster.image
        sleeper: dict[str, Any] = {"name": "x", "image": image, "command": ["sleep", "1"]}
        host = pod_with(namespace, "host", sleeper, {"name": "h", "hostPath": {"path": "/tmp"}})
        assert "hostPath" in refused(cluster, host) and "baseline" in refused(cluster, host)
        claim = {"name": "data", "persistentVolumeClaim": {"claimName": "hearth-model-cache"}}
        writer = pod_with(
            namespace, "writer", {**sleeper, "volumeMounts": [{"name": "data", "mountPath": "/m"}]}, claim
        )
        assert "only as the volume hearth-node-cache" in refused(cluster, writer)
        named = {**claim, "name": "hearth-node-cache"}
        mount = [{"name": "hearth-node-cache", "mountPath": "/m"}]
        writer = pod_with(namespace, "writer", {**sleeper, "volumeMounts": mount}, named)
        assert "readOnly: true on the mount" in refused(cluster, writer)  # this policy's or the fetcher one's
        reader = pod_with(namespace, "reader", {**sleeper, "volumeMounts": [{**mount[0], "readOnly": True}]}, named)
        assert apply(cluster, reader, "--dry-run=server").returncode == 0
    finally:
        cluster.kubectl("delete", "deploy", "msb", "-n", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "inferenceruntime", RUNTIME, check=False)
        cluster.kubectl("delete", "pv", f"hearth-model-cache-{namespace}", "--wait=false", check=False)


def pod_with(namespace: str, name: str, container: dict[str, Any], volume: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [container], "volumes": [volume]},
    }
