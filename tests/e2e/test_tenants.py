"""One tenant's broken or forged objects never stop Hearth for the others."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devcluster.cluster import MANIFESTS, Cluster
from devcluster.models import simulated_model
from tests.e2e.conftest import MESSAGES, apply, auth, expected, get_json, ready_pods, replicas, wait_for

pytestmark = pytest.mark.e2e


def malformed_pods_seen(cluster: Cluster, component: str) -> float:
    """hearth_informer_malformed_objects_total{resource="pods"}, summed over the component's pods."""
    total = 0.0
    for pod in cluster.hearth_pods(component):
        port = 9090 if component == "hearth-gateway" else 8081  # the front door's /metrics port
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
    """No call drains a pod (an unauthenticated `GET /drain` once turned it unready for good; a token in
    the pod's spec, readable by the `view` role, then guarded it): `/drained` only waits for the drain its
    SIGTERM begins, and the pod stays Ready. An ephemeral container that mounts Hearth's volumes is refused
    by the apiserver (the policy `hearth-volumes-are-hearths`). The positive path is every scale-down."""
    model = simulated_model(namespace, "guarded")
    model["metadata"]["annotations"]["hearth.dev/min-replicas"] = "1"
    apply(cluster, model)
    pod = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "guarded"), timeout=90)[0]
    sidecar = f"http://{pod['status']['podIP']}:8090"
    httpx.post(f"{sidecar}/drain", timeout=10)  # no route of the sidecar's: relayed to the runtime
    refused = httpx.get(f"{sidecar}/drained", timeout=30)
    assert refused.status_code == 409 and refused.json()["error"] == "this pod is not shutting down"
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
    client = httpx.Client(base_url=cluster.openai_base_url, headers=auth(cluster, namespace), timeout=120)
    answer = client.post(
        "/chat/completions", json={"model": f"{namespace}/fresh", "messages": MESSAGES, "max_tokens": 3}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == expected(3)


def recorded_names(cluster: Cluster) -> dict[str, str]:
    found = cluster.kubectl("get", "configmap", "hearth-model-names", "-n", "hearth-system", "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    names: dict[str, str] = json.loads(json.loads(found.stdout)["data"]["names.json"])
    return names


def test_a_newcomer_cannot_take_a_name_that_already_resolves(cluster: Cluster, namespace: str) -> None:
    """Namespace B creating a model of the same name used to make A's plain name `400 model_ambiguous`
    for A's clients: the name stays with A (recorded for front doors without keys), B is warned at apply
    time; with API keys each namespace's key reaches its own model by the plain name and never sees the
    other's."""
    name = f"twin-{namespace[-8:]}"  # unique to this test: other tests' models keep their names
    apply(cluster, simulated_model(namespace, name))
    wait_for("the scaler's record of the name", lambda: recorded_names(cluster).get(name) == f"{namespace}/{name}")
    other = f"{namespace[:50]}-b"
    cluster.kubectl("create", "namespace", other)
    try:
        applied = apply(cluster, simulated_model(other, name))
        assert (
            f"the model name '{name}' is already served by {namespace}/{name}; "
            f"clients reach this model as {other}/{name} (or as '{name}' with an API key of its namespace)"
            in applied.stderr
        ), applied.stderr
        a, b = (
            httpx.Client(base_url=cluster.openai_base_url, headers=auth(cluster, ns), timeout=120)
            for ns in (namespace, other)
        )

        def listed() -> dict[str, str] | None:
            ids = {m["hearth"]["deployment"]: m["id"] for m in b.get("/models").json()["data"]}
            return ids or None

        assert wait_for("B's model listed for B's key", listed, timeout=30) == {f"{other}/{name}": name}
        listed_a = {m["hearth"]["deployment"]: m["id"] for m in a.get("/models").json()["data"]}
        assert listed_a == {f"{namespace}/{name}": name}  # nothing of B's shows to A's key
        answer = a.post("/chat/completions", json={"model": name, "messages": MESSAGES, "max_tokens": 3})
        assert answer.status_code == 200, answer.text
        assert replicas(cluster, namespace, name) >= 1 and replicas(cluster, other, name) == 0  # A's model answered
        crossing = a.post("/chat/completions", json={"model": f"{other}/{name}", "messages": MESSAGES})
        assert crossing.status_code == 404 and crossing.json()["error"]["code"] == "model_not_found"
        assert recorded_names(cluster)[name] == f"{namespace}/{name}"
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
