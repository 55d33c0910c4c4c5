"""Hearth on a real control plane: kubectl, the real ReplicaSet controller, the real scheduler, the
webhook called by the real apiserver over TLS, simulated accelerator nodes."""

from __future__ import annotations

import copy
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devcluster import processes
from devcluster.cluster import DEV_RUNTIMES, MANIFESTS, Cluster
from tests.e2e.conftest import get_json, wait_for

pytestmark = pytest.mark.e2e
EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples" / "qwen3-8b.yaml").read_text())


def deployment(namespace: str, name: str = "qwen3-8b", **pod_annotations: str) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(EXAMPLE)
    obj["metadata"].update(name=name, namespace=namespace)
    obj["metadata"]["annotations"]["hearth.dev/min-replicas"] = "1"
    obj["spec"]["selector"]["matchLabels"]["app"] = name
    obj["spec"]["template"]["metadata"]["labels"]["app"] = name
    annotations = obj["spec"]["template"]["metadata"]["annotations"]
    if "hearth.dev/runtime" in pod_annotations:
        del annotations["hearth.dev/vendors"]  # a pinned runtime replaces the vendor list
    annotations.update(pod_annotations)
    return obj


def apply(cluster: Cluster, obj: dict[str, Any], *flags: str, check: bool = True) -> Any:
    return cluster.kubectl("apply", *flags, "-f", "-", stdin=yaml.safe_dump(obj), check=check)


def ready_pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]] | None:
    pods = get_json(cluster, "pods", "-n", namespace, "-l", f"app={app}")["items"]
    ready = [
        p
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
    ]
    return ready or None


def test_runtimes_are_listed_with_printer_columns(cluster: Cluster) -> None:
    table = cluster.kubectl("get", "inferenceruntimes").stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "VENDOR", "RESOURCE", "IMAGE", "PRIORITY", "AGE"]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["vllm-nvidia"][1:5] == ["nvidia", "nvidia.com/gpu", "vllm/vllm-openai:v0.13.0", "100"]
    assert rows["vllm-ascend-310p"][2] == "huawei.com/Ascend310P"


def test_invalid_runtime_is_refused_with_the_validators_message(cluster: Cluster) -> None:
    runtime = yaml.safe_load((MANIFESTS / "runtimes" / "vllm-nvidia.yaml").read_text())
    runtime["metadata"]["name"] = "broken"
    runtime["spec"]["container"]["args"].append("--x={{ gpu.count }}")
    result = apply(cluster, runtime, check=False)
    assert result.returncode != 0
    assert "unknown template variable {{ gpu.count }}" in result.stderr
    assert "denied the request" in result.stderr


def test_deployment_is_rendered_scheduled_and_ready(cluster: Cluster, namespace: str) -> None:
    apply(cluster, deployment(namespace))
    pods = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "qwen3-8b"), timeout=90)
    pod = pods[0]
    assert pod["spec"]["nodeName"] == "gpu-node-0"
    model, sidecar = pod["spec"]["containers"]
    assert model["image"] == "vllm/vllm-openai:v0.13.0"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert model["readinessProbe"]["httpGet"]["path"] == "/health"
    assert model["lifecycle"]["preStop"]["httpGet"]["path"] == "/drain"
    assert sidecar["name"] == "hearth-gateway" and sidecar["args"][:2] == ["gateway", "sidecar"]
    stamp = json.loads(pod["metadata"]["annotations"]["hearth.dev/rendered"])
    assert stamp["runtime"] == "vllm-nvidia" and stamp["stamp"].startswith("rv")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert pod["status"]["podIP"].startswith("127.20.0.")


def test_without_nvidia_runtimes_the_same_deployment_lands_on_ascend(cluster: Cluster, namespace: str) -> None:
    nvidia = ["vllm-nvidia", "sim-nvidia"]
    cluster.kubectl("delete", "inferenceruntime", *nvidia)
    try:
        wait_for("the webhook to forget the NVIDIA runtimes", lambda: "nvidia" not in _webhook_runtimes(cluster))
        apply(cluster, deployment(namespace))
        pod = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "qwen3-8b"), timeout=90)[0]
        assert pod["spec"]["nodeName"] == "ascend-node-0"
        model = pod["spec"]["containers"][0]
        assert model["image"] == "quay.io/ascend/vllm-ascend:v0.13.0"
        assert model["resources"]["limits"]["huawei.com/Ascend910"] == "1"
        assert {v["hostPath"]["path"] for v in pod["spec"]["volumes"] if "hostPath" in v} >= {
            "/usr/local/Ascend/driver"
        }
    finally:
        cluster.kubectl("apply", "-f", str(MANIFESTS / "runtimes"), "-f", str(DEV_RUNTIMES))


def _webhook_runtimes(cluster: Cluster) -> str:
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(cluster.layout.webhook_tls / "ca.crt"))
    url = f"https://127.0.0.1:{cluster.layout.webhook_port}/debug/runtimes"
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return str(response.read().decode())


def test_invalid_deployment_is_refused_with_key_value_and_fix(cluster: Cluster, namespace: str) -> None:
    bad = deployment(namespace)
    bad["metadata"]["annotations"]["hearth.dev/max-replicas"] = "three"
    result = apply(cluster, bad, check=False)
    assert result.returncode != 0
    assert 'metadata.annotations["hearth.dev/max-replicas"] is "three"' in result.stderr
    assert 'fix: write it as digits, e.g. "3"' in result.stderr
    assert cluster.kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout == ""


def test_risky_deployment_gets_a_kubectl_warning(cluster: Cluster, namespace: str) -> None:
    risky = deployment(namespace)
    risky["spec"]["replicas"] = 2
    result = apply(cluster, risky)
    assert "Warning: spec.replicas is set, but the Hearth scaler owns it" in result.stderr


def test_server_side_dry_run_succeeds_and_changes_nothing(cluster: Cluster, namespace: str) -> None:
    result = apply(cluster, deployment(namespace), "--dry-run=server", "--server-side")
    assert "serverside-applied (server dry run)" in result.stdout
    assert cluster.kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout == ""


def test_with_the_webhook_down_only_hearth_workloads_are_refused(cluster: Cluster, namespace: str) -> None:
    pids = processes.load_pids(cluster.layout.pids)
    os.kill(pids["webhook"], signal.SIGTERM)
    wait_for("the webhook to stop", lambda: not processes.alive(pids["webhook"]))
    try:
        plain = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "plain", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"app": "plain"}},
                "template": {
                    "metadata": {"labels": {"app": "plain"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        }
        apply(cluster, plain)
        wait_for("the plain pod to be Ready", lambda: ready_pods(cluster, namespace, "plain"), timeout=90)
        opted_in = deployment(namespace)
        opted_in["spec"]["template"]["spec"]["containers"][0]["image"] = "anything:1"  # no webhook to add one
        apply(cluster, opted_in)

        def refused() -> bool:
            events = get_json(cluster, "events", "-n", namespace)["items"]
            return any(e["reason"] == "FailedCreate" and "pods.hearth.dev" in e["message"] for e in events)

        wait_for("the ReplicaSet to report the refused pod", refused, timeout=60)
        assert get_json(cluster, "pods", "-n", namespace, "-l", "app=qwen3-8b")["items"] == []
    finally:
        restarted: dict[str, int] = {}
        cluster.start_webhook(restarted)
        processes.save_pids(cluster.layout.pids, {**pids, **restarted})
    wait_for(
        "the held-back pod to be created once the webhook is back",
        lambda: ready_pods(cluster, namespace, "qwen3-8b"),
        timeout=120,
    )


def test_request_goes_through_front_door_and_sidecar_to_the_pod(cluster: Cluster, namespace: str) -> None:
    import openai

    apply(cluster, deployment(namespace, name="chat", **{"hearth.dev/runtime": "sim-nvidia"}))
    pod = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "chat"), timeout=90)[0]
    client = openai.OpenAI(base_url=cluster.openai_base_url, api_key="unused", max_retries=0, timeout=30)
    chunks = list(
        client.chat.completions.create(
            model=f"{namespace}/chat", stream=True, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hearth keeps idle GPUs at"
    assert chunks[0].model == "chat"  # the runtime serves the Deployment's name
    stamp = json.loads(pod["metadata"]["annotations"]["hearth.dev/rendered"])
    sidecar = httpx.get(f"http://{pod['status']['podIP']}:{stamp['sidecarPort']}/demand").json()
    assert sidecar["served"] == 1 and sidecar["inFlight"] == 0  # it went through the pod's sidecar
    assert "chat" in {m.id for m in client.models.list()}


def test_certificate_rotation_through_the_real_apiserver(cluster: Cluster, namespace: str) -> None:
    """`hearth certs` renews the serving certificate (same CA) and patches the live caBundle; the running
    webhook picks it up and the apiserver keeps calling it."""
    import subprocess
    import sys

    before = (cluster.layout.webhook_tls / "tls.crt").read_bytes()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hearth",
            "certs",
            f"--out={cluster.layout.webhook_tls}",
            "--host=127.0.0.1",
            "--host=localhost",
            f"--kubeconfig={cluster.layout.kubeconfig}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "caBundle patched into mutating/hearth" in result.stdout
    assert (cluster.layout.webhook_tls / "tls.crt").read_bytes() != before
    time.sleep(11)  # the webhook looks for a rotated certificate every 10 s
    apply(cluster, deployment(namespace, name="after-rotation", **{"hearth.dev/runtime": "sim-nvidia"}))
    wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "after-rotation"), timeout=90)
