"""Hearth on a real cluster: kubectl, the real ReplicaSet controller, scheduler and kubelets (containerd,
runc, CNI), the webhook pods called by the real apiserver over TLS, accelerators from a device plugin."""

from __future__ import annotations

import copy
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devcluster.cluster import MANIFESTS, Cluster
from devcluster.processes import StartError
from tests.e2e.conftest import apply, get_json, ready_pods, sdk, wait_for, webhook_runtimes
from tests.support import GOLDEN, load_case
from tests.test_golden_modes import CASES as MODE_CASES
from tests.test_golden_modes import other_mode

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


def _shape(printed: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a read's answer is made of, apart from values a controller may change between two reads."""
    objs = printed["items"] if printed["kind"] == "List" else [printed]
    return [(o.get("apiVersion"), o.get("kind"), o["metadata"]["name"], sorted(o), sorted(o["metadata"])) for o in objs]


@pytest.mark.parametrize(
    "args",
    [
        ("deploy,daemonset", "-n", "hearth-system"),
        ("nodes",),
        ("inferenceruntime", "sim-nvidia"),
        ("pods", "-n", "hearth-system", "-l", "app.kubernetes.io/name=hearth-webhook"),
        ("events", "-A", "--field-selector", "involvedObject.kind=Node"),
    ],
)
def test_the_tests_reads_without_kubectl_print_what_kubectl_prints(cluster: Cluster, args: tuple[str, ...]) -> None:
    """devcluster.reads: the tests' polls read the API over one connection instead of a kubectl each. Ours is
    read between two of kubectl's and must be one of them: a node's Event may come between two reads."""

    def theirs() -> list[tuple[Any, ...]]:
        return _shape(json.loads(cluster.kubectl("get", *args, "-o", "json").stdout))

    before = theirs()
    ours = _shape(cluster.get_json(*args))
    assert before and ours in (before, theirs())


def test_a_read_of_what_is_not_there_fails_as_kubectls_does(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "deploy", "absent", "-n", "default", check=False).returncode != 0
    with pytest.raises(StartError, match="404"):
        cluster.get_json("deploy", "absent", "-n", "default")


def test_runtimes_are_listed_with_printer_columns(cluster: Cluster) -> None:
    table = cluster.kubectl("get", "inferenceruntimes").stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "VENDOR", "RESOURCE", "IMAGE", "PRIORITY", "AGE"]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["vllm-nvidia"][1:5] == ["nvidia", "nvidia.com/gpu", "vllm/vllm-openai:v0.13.0", "100"]
    assert rows["vllm-ascend-310p"][2] == "huawei.com/Ascend310P"


def test_kubectl_explain_describes_every_field_of_a_runtime(cluster: Cluster) -> None:
    """The apiserver publishes the CRD's descriptions (the validator's own): `kubectl explain` shows them."""
    from policies.runtime import field_descriptions

    explained = cluster.kubectl("explain", "inferenceruntime.spec.accelerator", "--recursive=false").stdout
    described = field_descriptions()
    assert described["spec.accelerator"] in " ".join(explained.split())
    for field in ("resource", "nodeSelector", "tolerations", "hostMounts"):
        assert " ".join(described[f"spec.accelerator.{field}"].split()) in " ".join(explained.split()), field
    assert "<no description>" not in explained


def test_the_crd_itself_refuses_what_the_validator_refuses(cluster: Cluster) -> None:
    """Server-side dry runs against the real apiserver: the CRD's schema and its CEL rule (which the unit
    tier cannot evaluate) refuse each invalid runtime before any webhook is asked, and accept the samples."""
    from tests.support import RUNTIMES
    from tests.test_runtimes import INVALID

    for name, runtime in sorted(INVALID.items()):
        if name == "unknown template variable":
            continue  # only the webhook knows the template language
        result = apply(cluster, runtime | {"metadata": {"name": "dry-run"}}, "--dry-run=server", check=False)
        assert result.returncode != 0, name
        assert "denied the request" not in result.stderr, (name, result.stderr)  # the CRD, not the webhook
        if name == "no model passed":
            assert "container.args must pass the model, e.g. --model={{ model.path }}" in result.stderr
    for path in sorted(RUNTIMES.glob("*.yaml")):
        assert cluster.kubectl("apply", "--dry-run=server", "-f", str(path), check=False).returncode == 0, path


def test_invalid_runtime_is_refused_with_the_validators_message(cluster: Cluster) -> None:
    runtime = yaml.safe_load((MANIFESTS / "runtimes" / "vllm-nvidia.yaml").read_text())
    runtime["metadata"]["name"] = "broken"
    runtime["spec"]["container"]["args"].append("--x={{ gpu.count }}")
    result = apply(cluster, runtime, check=False)
    assert result.returncode != 0
    assert "unknown template variable {{ gpu.count }}" in result.stderr
    assert "denied the request" in result.stderr


def test_deployment_is_rendered_scheduled_and_run_by_the_kubelet(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "secret", "generic", "hf", "-n", namespace, "--from-literal=token=s3cret")
    with_secret = deployment(namespace, **{"hearth.dev/runtime": "sim-nvidia"})
    with_secret["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    ]
    apply(cluster, with_secret)
    pods = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "qwen3-8b"), timeout=90)
    pod = pods[0]
    assert pod["spec"]["nodeName"] == "gpu-node-0"
    model, sidecar = pod["spec"]["containers"]
    assert model["image"] == cluster.image == sidecar["image"]  # the simulator and the sidecar: Hearth's image
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert model["startupProbe"]["httpGet"]["path"] == "/health"
    assert model["lifecycle"]["preStop"]["httpGet"]["path"] == "/drained"
    assert sidecar["name"] == "hearth-gateway" and sidecar["args"][:2] == ["gateway", "sidecar"]
    stamp = json.loads(pod["metadata"]["annotations"]["hearth.dev/rendered"])
    assert stamp["runtime"] == "sim-nvidia" and stamp["stamp"].startswith("rv")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert pod["status"]["podIP"].startswith(f"10.{200 + cluster.layout.pod_net}.1.")  # gpu-node-0's pod range
    statuses = pod["status"]["containerStatuses"]
    assert all(c["containerID"].startswith("containerd://") and c["ready"] for c in statuses)
    # The kubelet ran the device plugin's Allocate: the container sees the GPU it was given.
    env = exec_in(
        cluster, namespace, pod, "model", "python3", "-c", "import os; print(os.environ['NVIDIA_VISIBLE_DEVICES'])"
    )
    assert env.strip() in {"0", "1", "2", "3"}
    mounts = [line.split() for line in exec_in(cluster, namespace, pod, "model", "cat", "/proc/mounts").splitlines()]
    assert ["tmpfs", "/dev/shm"] in [m[:2] for m in mounts]  # the in-memory /dev/shm, sized by the webhook
    # The modelscope:// model comes from the node's cache (the dev runtimes name the dev hub), read-only.
    (cache,) = [m for m in mounts if m[1] == "/var/lib/hearth/models"]
    assert "ro" in cache[3].split(",")
    assert exec_in(cluster, namespace, pod, "model", "printenv", "HF_TOKEN").strip() == "s3cret"  # from the Secret
    name = pod["metadata"]["name"]
    touch = ["exec", "-n", namespace, name, "-c", "model", "--", "touch", "/var/lib/hearth/models/written"]
    assert cluster.kubectl(*touch, check=False).returncode != 0  # only the fetcher writes it


def exec_in(cluster: Cluster, namespace: str, pod: dict[str, Any], container: str, *argv: str) -> str:
    name = pod["metadata"]["name"]
    return cluster.kubectl("exec", "-n", namespace, name, "-c", container, "--", *argv).stdout


def test_a_real_vllm_runtime_renders_a_pod_the_kubelet_accepts(cluster: Cluster, namespace: str) -> None:
    """vllm/vllm-openai cannot be pulled here (no registry), but everything before the pull is real: the
    scheduler honours the GPU toleration and limit, the kubelet mounts every volume of the rendered pod
    (it does so before pulling) and then reports the pull, not a spec error. The runtime asks for 4 CPUs
    and 32Gi, more than a dev node has: the Deployment's own values replace them, as a user's would."""
    small = deployment(namespace, **{"hearth.dev/runtime": "vllm-nvidia"})
    small["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"}}
    # The shipped runtime caches the modelscope:// model from modelscope.cn, which is not reachable here: the
    # Deployment names the dev cluster's hub (which speaks ModelScope's API), as a user names a mirror.
    hub = {"name": "MODELSCOPE_ENDPOINT", "value": cluster.layout.hub_url}
    small["spec"]["template"]["spec"]["containers"][0]["env"] = [hub]
    apply(cluster, small)

    def pulling() -> dict[str, Any] | None:
        for pod in get_json(cluster, "pods", "-n", namespace, "-l", "app=qwen3-8b")["items"]:
            for status in pod.get("status", {}).get("containerStatuses") or []:
                reason = (status.get("state", {}).get("waiting") or {}).get("reason")
                if status["name"] == "model" and reason in ("ErrImagePull", "ImagePullBackOff"):
                    return dict(pod)
        return None

    pod = wait_for("the kubelet to reach the image pull", pulling, timeout=90)
    assert pod["spec"]["nodeName"] == "gpu-node-0"
    assert pod["spec"]["containers"][0]["image"] == "vllm/vllm-openai:v0.13.0"
    assert pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi", "nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    events = get_json(cluster, "events", "-n", namespace)["items"]
    assert not [e for e in events if e["reason"] in ("FailedMount", "Failed") and "pull" not in e["message"].lower()]


def no_nvidia(answers: list[str]) -> bool:
    return bool(answers) and not any("nvidia" in answer for answer in answers)


def test_without_nvidia_runtimes_the_same_deployment_lands_on_ascend(cluster: Cluster, namespace: str) -> None:
    # Without these, sim-ascend is the only runtime left: its image runs here (vLLM's needs a registry).
    removed = ["vllm-nvidia", "sim-nvidia", "llamacpp-nvidia", "vllm-ascend-910b", "vllm-ascend-310p"]
    cluster.kubectl("delete", "inferenceruntime", *removed)
    try:
        wait_for(
            "the webhooks to forget the NVIDIA runtimes",
            lambda: no_nvidia(webhook_runtimes(cluster)),
        )
        apply(cluster, deployment(namespace))
        pod = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "qwen3-8b"), timeout=90)[0]
        assert pod["spec"]["nodeName"] == "ascend-node-0"
        model = pod["spec"]["containers"][0]
        assert model["resources"]["limits"]["huawei.com/Ascend910"] == "1"
        host_paths = {v["hostPath"]["path"] for v in pod["spec"]["volumes"] if "hostPath" in v}
        assert host_paths >= {"/usr/local/Ascend/driver", "/usr/local/bin/npu-smi"}
        # The kubelet mounted the node's driver folder into the container, read-only.
        mounts = exec_in(cluster, namespace, pod, "model", "cat", "/proc/mounts").splitlines()
        driver = [line.split() for line in mounts if line.split()[1] == "/usr/local/Ascend/driver"]
        assert driver and "ro" in driver[0][3].split(",")
        assert exec_in(cluster, namespace, pod, "model", "printenv", "ASCEND_VISIBLE_DEVICES").strip().isdigit()
    finally:
        cluster.kubectl("apply", "-f", str(MANIFESTS / "runtimes"))
        cluster.kubectl("apply", "-f", "-", stdin=cluster.dev_runtimes(cluster.image, cluster.engine_image))


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
    cluster.kubectl("scale", "deploy/hearth-webhook", "-n", "hearth-system", "--replicas=0")
    wait_for("the webhook pods to go", lambda: not cluster.hearth_pods("hearth-webhook"), timeout=60)
    try:
        plain = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "plain", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"app": "plain"}},
                "template": {
                    "metadata": {"labels": {"app": "plain"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": cluster.image,
                                "command": ["hearth", "dev", "simulator", "--served-model-name=plain"],
                            }
                        ]
                    },
                },
            },
        }
        apply(cluster, plain)
        wait_for("the plain pod to be Ready", lambda: ready_pods(cluster, namespace, "plain"), timeout=90)
        opted_in = deployment(namespace, **{"hearth.dev/runtime": "sim-nvidia"})
        opted_in["spec"]["template"]["spec"]["containers"][0]["image"] = "anything:1"  # no webhook to add one
        apply(cluster, opted_in)

        def refused() -> bool:
            events = get_json(cluster, "events", "-n", namespace)["items"]
            return any(e["reason"] == "FailedCreate" and "pods.hearth.dev" in e["message"] for e in events)

        wait_for("the ReplicaSet to report the refused pod", refused, timeout=60)
        assert get_json(cluster, "pods", "-n", namespace, "-l", "app=qwen3-8b")["items"] == []
    finally:
        cluster.kubectl("scale", "deploy/hearth-webhook", "-n", "hearth-system", "--replicas=2")
        cluster.wait_hearth_ready(120)
    wait_for(
        "the held-back pod to be created once the webhook is back",
        lambda: ready_pods(cluster, namespace, "qwen3-8b"),
        timeout=120,
    )


def test_request_goes_through_front_door_and_sidecar_to_the_pod(cluster: Cluster, namespace: str) -> None:

    apply(cluster, deployment(namespace, name="chat", **{"hearth.dev/runtime": "sim-nvidia"}))
    pod = wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "chat"), timeout=90)[0]
    client = sdk(cluster, namespace, timeout=30)
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
    """`hearth certs` renews the serving certificate (same CA) and patches the live caBundle; the Secret is
    updated as a user would, the kubelet refreshes the mounted files, every webhook pod serves the new
    certificate without a restart, and the apiserver keeps calling them."""
    tls = cluster.layout.webhook_tls
    before = (tls / "tls.crt").read_bytes()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hearth",
            "certs",
            f"--out={tls}",
            "--host=hearth-webhook.hearth-system.svc",
            f"--kubeconfig={cluster.layout.kubeconfig}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "caBundle patched into mutating/hearth" in result.stdout
    renewed = (tls / "tls.crt").read_bytes()
    assert renewed != before
    cluster.apply_webhook_secret()  # as a user updates the Secret; the kubelet refreshes the mounted files
    restarts = {
        p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
        for p in cluster.hearth_pods("hearth-webhook")
    }

    def serving_renewed() -> bool:
        served = {
            ssl.get_server_certificate((pod["status"]["podIP"], 8443)).strip()
            for pod in cluster.hearth_pods("hearth-webhook")
        }
        return served == {renewed.decode().strip()}

    wait_for("every webhook pod to serve the renewed certificate", serving_renewed, timeout=150, every=2)
    after = {
        p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
        for p in cluster.hearth_pods("hearth-webhook")
    }
    assert after == restarts  # picked up live, no restart
    apply(cluster, deployment(namespace, name="after-rotation", **{"hearth.dev/runtime": "sim-nvidia"}))
    wait_for("a Ready pod", lambda: ready_pods(cluster, namespace, "after-rotation"), timeout=90)


def test_hearth_status_lists_every_namespace_with_a_and_one_without(
    cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from hearth.cli import main

    other = f"{namespace}-b"
    cluster.kubectl("create", "namespace", other)
    try:
        apply(cluster, deployment(namespace, name="listed-a", **{"hearth.dev/runtime": "sim-nvidia"}))
        apply(cluster, deployment(other, name="listed-b", **{"hearth.dev/runtime": "sim-nvidia"}))
        kubeconfig = f"--kubeconfig={cluster.layout.kubeconfig}"
        assert main(["status", "-A", kubeconfig]) == 0
        everywhere = capsys.readouterr().out.splitlines()
        header = ["NAME", "KIND", "PHASE", "RUNTIME", "REPLICAS", "DEMAND", "PREWARMED", "LAST", "START", "ETA", "AGE"]
        assert everywhere[0].split() == header
        names = [line.split()[0] for line in everywhere[1:]]
        assert f"{namespace}/listed-a" in names and f"{other}/listed-b" in names
        assert main(["status", "-n", other, kubeconfig]) == 0
        one = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in one[1:]] == ["listed-b"]
        assert one[1].split()[1:4:2] == ["Deployment", "sim-nvidia"]
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


ADOPTED = [
    *[(c, "as-written") for c in sorted(GOLDEN.glob("adopt-*.yaml")) + sorted(GOLDEN.glob("keep-*.yaml"))],
    *[(c, "other-mode") for c in MODE_CASES],
]


@pytest.mark.parametrize(("case", "variant"), ADOPTED, ids=[f"{c.stem}-{v}" for c, v in ADOPTED])
def test_an_adopted_deployment_gets_pods_the_apiserver_accepts(
    cluster: Cluster, namespace: str, case: Path, variant: str
) -> None:
    """Each real-world shape, applied as its user would: the ReplicaSet's pods are created (no FailedCreate:
    the apiserver accepts what the webhook rendered), with the user's env (Secret references) kept, and in
    keep mode the user's image and command. Their PVCs and images do not exist here, so the pods go no
    further than Pending or the image pull."""
    adopted = load_case(case)[0] if variant == "as-written" else other_mode(case)[1]
    kept = "hearth.dev/model" not in adopted["spec"]["template"]["metadata"].get("annotations", {})
    adopted["metadata"]["namespace"] = namespace
    adopted["metadata"].setdefault("annotations", {})["hearth.dev/min-replicas"] = "1"
    apply(cluster, adopted)
    selector = ",".join(f"{k}={v}" for k, v in adopted["spec"]["selector"]["matchLabels"].items())
    pods = wait_for("a pod", lambda: get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"], timeout=60)
    assert "hearth.dev/rendered" in pods[0]["metadata"]["annotations"]
    model = next(c for c in pods[0]["spec"]["containers"] if "preStop" in (c.get("lifecycle") or {}))
    theirs = next(c for c in adopted["spec"]["template"]["spec"]["containers"] if c["name"] == model["name"])
    for variable in theirs.get("env") or []:
        assert variable in model["env"]
    if kept:
        assert (model["image"], model.get("command"), model.get("args")) == (
            theirs["image"],
            theirs.get("command"),
            theirs.get("args"),
        )
    events = get_json(cluster, "events", "-n", namespace)["items"]
    assert not [e["message"] for e in events if e["reason"] == "FailedCreate"]
    # Gone before the next test: a scheduled pod holds its accelerator (gpu-node-0 has four) until its object
    # is deleted, and these pods (their images cannot be pulled) have nothing to drain.
    cluster.kubectl("delete", "deploy", adopted["metadata"]["name"], "-n", namespace, "--wait=false")
    cluster.kubectl("delete", "pods", "-n", namespace, "-l", selector, "--grace-period=0", "--force")
