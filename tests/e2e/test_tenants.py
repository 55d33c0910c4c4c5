"""One tenant's broken or forged objects never stop Hearth for the others."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devcluster.cluster import MANIFESTS, Cluster
from devcluster.models import simulated_model
from tests.e2e.conftest import MESSAGES, apply, expected, get_json, ready_pods, wait_for

pytestmark = pytest.mark.e2e


def malformed_pods_seen(cluster: Cluster, component: str) -> float:
    """hearth_informer_malformed_objects_total{resource="pods"}, summed over the component's pods."""
    total = 0.0
    for pod in cluster.hearth_pods(component):
        port = 8080 if component == "hearth-gateway" else 8081
        text = httpx.get(f"http://{pod['status']['podIP']}:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "hearth_informer_malformed_objects_total" and sample.labels["resource"] == "pods":
                    total += sample.value
    return total


def test_a_tenant_cannot_rewrite_its_pods_stamp(cluster: Cluster, namespace: str) -> None:
    """The ValidatingAdmissionPolicy in manifests/stamp-policy.yaml refuses any change of the stamp, inside
    the apiserver (no webhook call): overwriting, removing, or adding one to a pod that had none."""
    model = simulated_model(namespace, "stamped")
    model["metadata"]["annotations"]["hearth.dev/min-replicas"] = "1"
    apply(cluster, model)
    ready = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "stamped"), timeout=90)
    pod = ready[0]["metadata"]["name"]
    for change in (["hearth.dev/rendered={}", "--overwrite"], ["hearth.dev/rendered-"]):
        refused = cluster.kubectl("annotate", "pod", "-n", namespace, pod, *change, check=False)
        assert refused.returncode != 0, change
        assert "hearth-stamp-is-immutable" in refused.stderr, refused.stderr
        assert "cannot be added, changed or removed" in refused.stderr
    plain: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain", "namespace": namespace}}
    plain["spec"] = {"containers": [{"name": "c", "image": cluster.image, "command": ["sleep", "3600"]}]}
    apply(cluster, plain)
    added = cluster.kubectl("annotate", "pod", "-n", namespace, "plain", "hearth.dev/rendered={}", check=False)
    assert added.returncode != 0 and "hearth-stamp-is-immutable" in added.stderr
    assert cluster.kubectl("annotate", "pod", "-n", namespace, pod, "note=fine").returncode == 0  # the rest is free


def test_a_tenant_can_neither_drain_a_pod_nor_mount_its_host_paths(cluster: Cluster, namespace: str) -> None:
    """`GET /drain` without the pod's own token is refused, and the pod stays Ready (it used to turn
    unready for good); an ephemeral container that mounts Hearth's volumes is refused by the apiserver (the
    policy `hearth-volumes-are-hearths`). The token's positive path is every scale-down's drain."""
    model = simulated_model(namespace, "guarded")
    model["metadata"]["annotations"]["hearth.dev/min-replicas"] = "1"
    apply(cluster, model)
    pod = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "guarded"), timeout=90)[0]
    sidecar = f"http://{pod['status']['podIP']}:8090"
    for headers in ({}, {"Authorization": "Bearer guessed"}):
        refused = httpx.get(f"{sidecar}/drain", headers=headers, timeout=10)
        assert refused.status_code == 401 and "only this pod's own shutdown" in refused.json()["error"]
    assert httpx.get(f"{sidecar}/ready", timeout=10).status_code == 200
    debug: dict[str, Any] = {"name": "peek", "image": cluster.image, "command": ["sleep", "60"]}
    debug["volumeMounts"] = [{"name": "hearth-shm", "mountPath": "/mnt/shm"}]
    patch = json.dumps({"spec": {"ephemeralContainers": [debug]}})
    name = pod["metadata"]["name"]
    refused_debug = cluster.kubectl(
        "patch", "pod", "-n", namespace, name, "--subresource=ephemeralcontainers", "-p", patch, check=False
    )
    assert refused_debug.returncode != 0 and "hearth-volumes-are-hearths" in refused_debug.stderr
    assert "may not mount Hearth's volumes" in refused_debug.stderr


def test_a_forged_stamp_is_skipped_reported_and_stops_nobody_else(cluster: Cluster, namespace: str) -> None:
    """The second line, with the policy's binding removed (a cluster without it, or an admin's mistake): a
    tenant overwrites its own pod's `hearth.dev/rendered` with `{}`; that pod is left out (and reported as
    a Warning Event on its Deployment), while the front doors and the scaler go on serving every other
    model, including one created after the forgery, which must be discovered and activated."""
    forged = simulated_model(namespace, "forged")
    forged["metadata"]["annotations"]["hearth.dev/min-replicas"] = "1"
    apply(cluster, forged)
    pod = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "forged"), timeout=90)[0]
    before = malformed_pods_seen(cluster, "hearth-gateway"), malformed_pods_seen(cluster, "hearth-scaler")

    cluster.kubectl("delete", "validatingadmissionpolicybinding", "hearth-stamp-is-immutable")
    try:
        name = pod["metadata"]["name"]
        # The binding's removal takes effect within a moment: retry the forgery until it goes through.
        wait_for(
            "the forgery to be admitted",
            lambda: (
                cluster.kubectl(
                    "annotate", "pod", "-n", namespace, name, "hearth.dev/rendered={}", "--overwrite", check=False
                ).returncode
                == 0
            ),
            timeout=30,
        )
    finally:
        cluster.kubectl("apply", "-f", str(MANIFESTS / "stamp-policy.yaml"))

    def reported() -> bool:
        events = get_json(cluster, "events", "-n", namespace)["items"]
        return any(
            e["reason"] == "MalformedPod" and e["type"] == "Warning" and e["involvedObject"]["name"] == "forged"
            for e in events
        )

    wait_for("a MalformedPod Warning Event on the Deployment", reported, timeout=30)
    wait_for(
        "every front door and the scaler to count the skipped pod",
        lambda: (
            malformed_pods_seen(cluster, "hearth-gateway") >= before[0] + 2
            and malformed_pods_seen(cluster, "hearth-scaler") >= before[1] + 1
        ),
        timeout=30,
    )
    apply(cluster, simulated_model(namespace, "fresh"))  # at zero: a front door must find it, the scaler wake it
    client = httpx.Client(base_url=cluster.openai_base_url, timeout=120)
    answer = client.post(
        "/chat/completions", json={"model": f"{namespace}/fresh", "messages": MESSAGES, "max_tokens": 3}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == expected(3)
