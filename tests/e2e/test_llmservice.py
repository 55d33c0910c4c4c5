"""LLMService on the local cluster: the announcement's sample as written, a simulated model 0 -> 1 -> N -> 0
through the front door with the OpenAI SDK while `kubectl get llmservice` follows, edits, deletion, refusals,
a name someone else holds, the controller killed mid-change, and Argo CD's health in every phase."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from tests.e2e.conftest import MESSAGES, Snapshots, apply, get_json, sdk, wait_for
from tests.support import ROOT
from tests.test_argocd_health import LLMSERVICE, health

pytestmark = pytest.mark.e2e

SAMPLE = ROOT / "examples" / "llmservice" / "qwen3-8b.yaml"


def columns(cluster: Cluster, namespace: str, name: str, wide: bool = False) -> list[str]:
    args = ["get", "llmservice", name, "-n", namespace, "--no-headers", *(["-o", "wide"] if wide else [])]
    found = cluster.kubectl(*args, check=False)
    return found.stdout.split() if found.returncode == 0 else []


def service(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """An LLMService pinned to the simulator runtime (devcluster/runtimes.yaml), quick to load and to let go."""
    body: dict[str, Any] = {
        "model": {"source": {"uri": "hf://Qwen/Qwen3-8B"}},
        "runtime": {"name": "sim-nvidia", "args": ["--startup-duration=2s", "--itl=20ms"]},
        "scaling": {"min": 0, "max": 2, "target": 1, "scaleDownDelay": "3s"},
        "coldStart": {"heartbeatInterval": "1s"},
    }
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value}
    return {
        "apiVersion": "serving.hearth.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def status_phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase") or None


def test_the_announcements_sample_as_written_stays_at_zero_on_vllm_nvidia(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "ai", check=False)
    cluster.kubectl("apply", "-f", str(SAMPLE))

    def row() -> list[str] | None:
        shown = columns(cluster, "ai", "qwen3-8b")
        return shown if shown[1:4] == ["ScaledToZero", "vllm-nvidia", "0"] else None

    assert wait_for("ScaledToZero vllm-nvidia 0", row, timeout=60)[0] == "qwen3-8b"
    header = cluster.kubectl("get", "llmservice", "-n", "ai").stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "RUNTIME", "REPLICAS", "AGE"]
    wide = cluster.kubectl("get", "llmservice", "-n", "ai", "-o", "wide").stdout.splitlines()[0].split()
    assert wide == ["NAME", "PHASE", "RUNTIME", "REPLICAS", "READY", "DEMAND", "MODEL", "AGE"]
    deployment = get_json(cluster, "deploy", "qwen3-8b", "-n", "ai")
    owner = deployment["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "LLMService" and owner["controller"] is True
    assert deployment["spec"]["replicas"] == 0  # the webhook's min-replicas at creation: no pod started once
    assert cluster.pods("ai", "serving.hearth.dev/llmservice=qwen3-8b") == []
    status = get_json(cluster, "llmservice", "qwen3-8b", "-n", "ai")["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Ready": "True", "Serving": "False"}
    hearth = [sys.executable, "-m", "hearth", "status", "-n", "ai", "--kubeconfig", str(cluster.layout.kubeconfig)]
    table = subprocess.run(hearth, capture_output=True, text=True, check=True).stdout.splitlines()
    assert table[1].split()[:4] == ["qwen3-8b", "LLMService", "ScaledToZero", "vllm-nvidia"], table


def test_an_llmservice_serves_0_to_n_to_0_edits_roll_as_a_deployment_would_and_deletion_drains(
    cluster: Cluster, namespace: str
) -> None:
    apply(cluster, service(namespace, "chat"))
    wait_for("at zero", lambda: columns(cluster, namespace, "chat")[1:2] == ["ScaledToZero"], timeout=60)
    client = sdk(cluster, namespace)
    with Snapshots(cluster, namespace, "chat", "llmservice", status_phase) as watch:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # target 1, two streams: 0 -> 1 -> 2
            streams = [
                pool.submit(
                    lambda: list(
                        client.chat.completions.create(model="chat", messages=MESSAGES, stream=True, max_tokens=250)
                    )
                )
                for _ in range(2)
            ]
            wait_for("two replicas", lambda: columns(cluster, namespace, "chat")[3:4] == ["2"], timeout=90)
            for stream in streams:
                assert len(stream.result(timeout=120)) > 100
        at_zero = ["ScaledToZero", "sim-nvidia", "0"]
        wait_for("back to zero", lambda: columns(cluster, namespace, "chat")[1:4] == at_zero, timeout=90)
    assert {"ScaledToZero", "Activating", "Ready"} <= set(watch.by_phase), watch.by_phase.keys()
    expected = {"ScaledToZero": "Healthy", "Activating": "Progressing", "Ready": "Healthy", "Scaling": "Progressing"}
    for name, obj in watch.by_phase.items():
        assert health(LLMSERVICE, obj)[0][0] == expected[name], (name, obj["status"])

    # A scale field changes the Deployment's metadata only: the running pod stays.
    apply(cluster, service(namespace, "chat", scaling={"min": 1}))
    pods = wait_for("one pod up", lambda: cluster.live_pods(namespace, "serving.hearth.dev/llmservice=chat"))
    pod: dict[str, Any] = pods[0]
    apply(cluster, service(namespace, "chat", scaling={"min": 1, "target": 3, "scaleDownDelay": "4s"}))
    wait_for(
        "the edit compiled",
        lambda: (
            get_json(cluster, "deploy", "chat", "-n", namespace)["metadata"]["annotations"]["hearth.dev/target"] == "3"
        ),
    )
    wait_for("Ready", lambda: columns(cluster, namespace, "chat")[1:2] == ["Ready"], timeout=60)
    uids = {p["metadata"]["uid"] for p in cluster.live_pods(namespace, "serving.hearth.dev/llmservice=chat")}
    assert uids == {pod["metadata"]["uid"]}
    # A runtime field changes the pod template: a rollout, as editing the Deployment would make.
    apply(cluster, service(namespace, "chat", scaling={"min": 1}, runtime={"args": ["--itl=10ms"]}))
    wait_for(
        "a new pod",
        lambda: any(
            p["metadata"]["uid"] != pod["metadata"]["uid"] and "--itl=10ms" in json.dumps(p["spec"])
            for p in cluster.pods(namespace, "serving.hearth.dev/llmservice=chat")
        ),
        timeout=90,
    )
    assert client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=5).choices[0].message.content
    # Deleting the LLMService removes its Deployment (the garbage collector) and its pods drain away.
    cluster.kubectl("delete", "llmservice", "chat", "-n", namespace)
    wait_for(
        "the Deployment gone",
        lambda: cluster.kubectl("get", "deploy", "chat", "-n", namespace, check=False).returncode != 0,
        timeout=60,
    )
    wait_for("no pods", lambda: not cluster.pods(namespace, "serving.hearth.dev/llmservice=chat"), timeout=90)


def test_refusals_name_the_llmservices_fields_and_a_foreign_deployment_is_never_taken(
    cluster: Cluster, namespace: str
) -> None:
    bad = service(namespace, "bad", scaling={"scaleDownDelay": "999h"})  # the schema lets it by; the webhook not
    refused = apply(cluster, bad, check=False)
    assert refused.returncode != 0
    assert 'LLMService bad: spec.scaling.scaleDownDelay is "999h": must be from 0s to 168h' in refused.stderr
    by_schema = apply(cluster, service(namespace, "bad", scaling={"max": 0}), check=False)
    assert by_schema.returncode != 0 and "spec.scaling.max" in by_schema.stderr
    typo = apply(cluster, service(namespace, "bad", scaling={"maxReplicas": 3}), check=False)
    assert typo.returncode != 0 and "maxReplicas" in typo.stderr  # kubectl's strict field validation

    cluster.kubectl("create", "deployment", "taken", "--image=registry.invalid/web:1", "-n", namespace)
    # As the Deployment controller left it (it adds its revision annotation first): read at once, `before`
    # once lacked the annotation that `after` had.
    before = wait_for(
        "the Deployment controller to see it",
        lambda: (d := get_json(cluster, "deploy", "taken", "-n", namespace))["status"].get("observedGeneration") and d,
    )
    apply(cluster, service(namespace, "taken"))
    row = wait_for("Conflict", lambda: (r := columns(cluster, namespace, "taken"))[1:2] == ["Conflict"] and r)
    assert row
    status = get_json(cluster, "llmservice", "taken", "-n", namespace)["status"]
    assert "does not own" in status["message"]
    assert health(LLMSERVICE, get_json(cluster, "llmservice", "taken", "-n", namespace))[0][0] == "Degraded"
    after = get_json(cluster, "deploy", "taken", "-n", namespace)
    assert after["metadata"].get("annotations") == before["metadata"].get("annotations")
    assert after["spec"]["template"] == before["spec"]["template"]
    assert "ownerReferences" not in after["metadata"]
    # The scaler, whatever it is made to do, writes the spec of no Deployment but an LLMService's.
    patched = cluster.kubectl(
        "patch", "deploy", "taken", "-n", namespace, "--type=merge", "-p", '{"spec":{"paused":true}}',
        "--as=system:serviceaccount:hearth-system:hearth-scaler", check=False,
    )  # fmt: skip
    assert patched.returncode != 0 and "hearth-scaler-deployments" in patched.stderr
    # A pod template the apiserver refuses (the webhook does not know every pod field): Invalid, in its words.
    apply(cluster, service(namespace, "refused", template={"spec": {"restartPolicy": "Never"}}))
    invalid = wait_for("Invalid", lambda: columns(cluster, namespace, "refused")[1:2] == ["Invalid"], timeout=60)
    assert invalid
    message = get_json(cluster, "llmservice", "refused", "-n", namespace)["status"]["message"]
    assert "was refused" in message and "restartPolicy" in message, message
    # Once the foreign Deployment is gone, Hearth makes its own.
    cluster.kubectl("delete", "deploy", "taken", "-n", namespace)
    wait_for("ScaledToZero", lambda: columns(cluster, namespace, "taken")[1:2] == ["ScaledToZero"], timeout=60)


def test_an_edit_made_while_the_leading_scaler_dies_is_finished_by_the_next(cluster: Cluster, namespace: str) -> None:
    apply(cluster, service(namespace, "steady"))
    wait_for("at zero", lambda: columns(cluster, namespace, "steady")[1:2] == ["ScaledToZero"], timeout=60)
    generation = get_json(cluster, "llmservice", "steady", "-n", namespace)["metadata"]["generation"]
    apply(cluster, service(namespace, "steady", scaling={"max": 3, "target": 7}))
    scalers = ("-n", "hearth-system", "-l", "app.kubernetes.io/name=hearth-scaler")
    cluster.kubectl("delete", "pod", *scalers, "--grace-period=0", "--force", "--wait=false")

    def caught_up() -> bool:
        obj = get_json(cluster, "llmservice", "steady", "-n", namespace)
        return bool((obj.get("status") or {}).get("observedGeneration") == generation + 1)

    wait_for("the new leader's status", caught_up, timeout=120)
    annotations = get_json(cluster, "deploy", "steady", "-n", namespace)["metadata"]["annotations"]
    assert annotations["hearth.dev/max-replicas"] == "3" and annotations["hearth.dev/target"] == "7"
    assert get_json(cluster, "deploy", "steady", "-n", namespace)["spec"]["replicas"] == 0
    shown = cluster.kubectl("get", "deploy", "steady", "-n", namespace, "-o", "yaml", "--show-managed-fields").stdout
    owns: dict[str, str] = {}  # manager -> the spec fields of all its entries (Apply and Update)
    for entry in yaml.safe_load(shown)["metadata"]["managedFields"]:
        spec = json.dumps((entry.get("fieldsV1") or {}).get("f:spec", {}))
        owns[entry["manager"]] = owns.get(entry["manager"], "") + spec
    assert "f:replicas" not in owns["hearth-llmservice"], owns  # so no apply of ours can ever reset it


def test_the_namespace_roles_grant_llmservices_as_they_grant_deployments(cluster: Cluster, namespace: str) -> None:
    """manifests/rbac-tenants.yaml aggregates llmservices into admin, edit and view (the controller-manager's
    aggregation): a developer bound to edit in a namespace may create them there, a reader only read them,
    and nobody writes the status but the scaler."""
    for role, user in (("edit", "dev"), ("view", "reader")):
        cluster.kubectl(
            "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", namespace
        )

    def can(user: str, verb: str, where: str = namespace, *extra: str) -> str:
        argv = ["auth", "can-i", verb, "llmservices.serving.hearth.dev", "-n", where, f"--as={user}", *extra]
        return str(cluster.kubectl(*argv, check=False).stdout.strip())

    wait_for("edit to include llmservices", lambda: can("dev", "create") == "yes" or None, timeout=30)
    assert [can("dev", verb) for verb in ("get", "list", "watch", "update", "patch", "delete")] == ["yes"] * 6
    assert can("dev", "patch", namespace, "--subresource=status") == "no"
    assert can("dev", "create", "default") == "no"  # a RoleBinding reaches its own namespace only
    assert [can("reader", verb) for verb in ("get", "list", "watch", "create", "delete")] == ["yes"] * 3 + ["no"] * 2
