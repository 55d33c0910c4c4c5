"""The tenant boundary on the live cluster: the admission policies Hearth installs (manifests/
node-cache-policy.yaml, stamp-policy.yaml, privilege-policy.yaml) judged by the real apiserver, for pods
that never reach Hearth's webhook, and Hearth's own ServiceAccounts held to their jobs.

Pods are sent with a server-side dry run: the apiserver runs every admission step (the webhooks and the
policies) and stores nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from common.kubeapi import ApiError, KubeAPI
from devcluster.cluster import Cluster
from tests.e2e.conftest import get_json

pytestmark = pytest.mark.e2e

CACHE = "/var/lib/hearth/models"  # the dev runtimes' spec.cache.hostPath


def dry_run(cluster: Cluster, body: dict[str, Any], *flags: str) -> tuple[bool, str]:
    result = cluster.kubectl("create", "--dry-run=server", *flags, "-f", "-", stdin=json.dumps(body), check=False)
    return result.returncode == 0, result.stderr


def pod(
    namespace: str, *, volumes: list[dict[str, Any]], init: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "example/app:1"}], "volumes": volumes, **extra}
    if init:
        spec["initContainers"] = init
    meta = {"name": "tenant-pod", "namespace": namespace, "annotations": extra.pop("annotations", {})}
    spec.pop("annotations", None)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def mounting(path: str, *, read_only: bool, name: str = "host") -> dict[str, Any]:
    body = pod("x", volumes=[{"name": name, "hostPath": {"path": path}}])
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": name, "mountPath": "/m", "readOnly": read_only}]
    return body


def fetcher(cluster: Cluster, namespace: str, **changes: Any) -> dict[str, Any]:
    """A tenant's own pod with an init container shaped as the webhook renders hearth-fetch."""
    container: dict[str, Any] = {
        "name": "hearth-fetch",
        "image": cluster.image,
        "command": ["hearth"],
        "args": ["cache", "fetch", "--model=hf://Org/Name", "--endpoint=https://hub.example", f"--root={CACHE}"],
        "env": [{"name": "HF_TOKEN", "value": "hf_x"}],
        "volumeMounts": [{"name": "hearth-node-cache", "mountPath": CACHE}],
    }
    container.update(changes.pop("container", {}))
    volumes = [{"name": "hearth-node-cache", "hostPath": {"path": CACHE, "type": "DirectoryOrCreate"}}]
    body = pod(namespace, volumes=volumes, init=[container], **changes)
    return body


@pytest.mark.parametrize(
    ("path", "read_only", "allowed"),
    [
        (CACHE, False, False),
        ("//var/lib/hearth/models/", False, False),
        ("/var/./lib/hearth/models/huggingface", False, False),
        ("/var/lib", False, False),
        ("/var/lib", True, True),  # a read-only parent (a log collector's) is not refused
        (CACHE, True, True),
        ("/var/lib/hearth-other", False, True),
    ],
)
def test_no_pod_of_any_namespace_writes_the_node_cache_by_a_host_path(
    cluster: Cluster, namespace: str, path: str, read_only: bool, allowed: bool
) -> None:
    """A pod without the opt-in label never reaches the webhook: it used to mount the cache writable."""
    body = mounting(path, read_only=read_only)
    body["metadata"]["namespace"] = namespace
    ok, why = dry_run(cluster, body)
    assert ok is allowed, why
    if not allowed:
        assert "hearth-node-cache-host-path" in why and "only read-only" in why


def test_a_namespace_the_admin_exempts_may_mount_a_parent_of_the_cache(cluster: Cluster, namespace: str) -> None:
    """System agents (a driver installer mounting the host's `/`) live in namespaces a cluster admin exempts."""
    body = mounting("/", read_only=False)
    body["metadata"]["namespace"] = namespace
    assert not dry_run(cluster, body)[0]
    cluster.kubectl("label", "namespace", namespace, "hearth.dev/node-cache-policy=exempt")
    ok, why = dry_run(cluster, body)
    assert ok, why


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"container": {"image": "example/evil:1"}}, "must run Hearth's own image"),
        ({"container": {"env": [{"name": "LD_PRELOAD", "value": f"{CACHE}/x.so"}]}}, "takes only HF_TOKEN"),
        ({"container": {"envFrom": [{"secretRef": {"name": "everything"}}]}}, "takes only HF_TOKEN"),
        (
            {
                "container": {
                    "args": ["cache", "fetch", "--model=hf://O/N", "--root=/var/lib/hearth/models/huggingface"]
                }
            },
            "and nothing else",
        ),
        (
            {"container": {"restartPolicy": "Always", "lifecycle": {"postStart": {"exec": {"command": ["sh"]}}}}},
            "no hooks",
        ),
        ({"shareProcessNamespace": True}, "may not share its process namespace"),
    ],
)
def test_only_hearths_fetcher_in_the_rendered_shape_writes_the_node_cache(
    cluster: Cluster, namespace: str, change: dict[str, Any], said: str
) -> None:
    ok, why = dry_run(cluster, fetcher(cluster, namespace, **change))
    assert not ok and said in why, why


def test_a_fetcher_in_the_rendered_shape_is_admitted(cluster: Cluster, namespace: str) -> None:
    """The fetcher fills only the entry of the hub it is told: a tenant may run it as it likes."""
    ok, why = dry_run(cluster, fetcher(cluster, namespace))
    assert ok, why


def test_hearths_pod_annotations_only_on_pods_the_webhook_rendered(cluster: Cluster, namespace: str) -> None:
    body = pod(namespace, volumes=[])
    for annotation in ("cache.hearth.dev/model", "hearth.dev/rendered"):
        body["metadata"]["annotations"] = {annotation: "huggingface/victim/model"}
        ok, why = dry_run(cluster, body)
        assert not ok and "hearth-pod-annotations" in why, why
    body["metadata"]["annotations"] = {}
    assert dry_run(cluster, body)[0]


def as_account(cluster: Cluster, account: str, *bound: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """kubectl as one of Hearth's ServiceAccounts: its token alone (beside the admin's client certificate
    in the kubeconfig the certificate would win)."""
    token = cluster.kubectl("create", "token", account, "-n", "hearth-system", *bound).stdout.strip()
    server = cluster.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    ca = cluster.layout.state / f"ca-{account}.crt"
    raw = "jsonpath={.clusters[0].cluster.certificate-authority-data}"
    ca.write_bytes(base64.b64decode(cluster.kubectl("config", "view", "--minify", "--raw", "-o", raw).stdout))
    kubectl = shutil.which("kubectl") or "kubectl"

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        flags = ["--kubeconfig=/dev/null", f"--server={server}", f"--certificate-authority={ca}", f"--token={token}"]
        argv = [kubectl, *flags, *args]
        return subprocess.run(argv, check=False, input=stdin, capture_output=True, text=True, timeout=60)

    assert "system:serviceaccount:hearth-system:" + account in run("auth", "whoami").stdout
    return run


def test_the_node_agent_changes_only_its_own_nodes_cache_labels(cluster: Cluster) -> None:
    """Its ClusterRole lets it patch every Node; the policy holds it to its own, as NodeRestriction does."""
    agent = cluster.pods("hearth-system", "app.kubernetes.io/name=hearth-node-agent")[0]
    own, meta = agent["spec"]["nodeName"], agent["metadata"]
    other = next(n["metadata"]["name"] for n in get_json(cluster, "nodes")["items"] if n["metadata"]["name"] != own)
    bound = ("--bound-object-kind=Pod", f"--bound-object-name={meta['name']}", f"--bound-object-uid={meta['uid']}")
    kubectl = as_account(cluster, "hearth-node-agent", *bound)

    def label(node: str, pair: str) -> subprocess.CompletedProcess[str]:
        return kubectl("label", "--overwrite", "--dry-run=server", "node", node, pair)

    assert label(own, "cache.hearth.dev/m-test=true").returncode == 0
    refused = label(other, "cache.hearth.dev/m-test=true")
    assert refused.returncode != 0 and f"only the Node it runs on ({own}), not {other}" in refused.stderr
    refused = label(own, "example.com/role=anything")
    assert refused.returncode != 0 and "only the cache.hearth.dev/ labels" in refused.stderr
    unbound = as_account(cluster, "hearth-node-agent")  # a token not bound to its pod names no node
    refused = unbound("label", "--dry-run=server", "node", own, "cache.hearth.dev/m-x=true")
    assert refused.returncode != 0 and "its token is not bound to a pod" in refused.stderr


def test_the_scaler_creates_prewarm_jobs_and_nothing_else(cluster: Cluster, namespace: str) -> None:
    """Its ClusterRole lets it create Jobs in any namespace; the policy pins what they may run."""
    kubectl = as_account(cluster, "hearth-scaler")
    labels = {"app.kubernetes.io/component": "prewarm", "app.kubernetes.io/managed-by": "hearth"}
    container = {"name": "hearth-fetch", "image": cluster.image, "command": ["hearth"], "args": ["cache", "fetch"]}

    def create(namespace: str, container: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "hearth-prewarm-x", "namespace": namespace, "labels": labels},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
        }
        return kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(job))

    assert create(namespace, container).returncode == 0, create(namespace, container).stderr
    refused = create("kube-system", container)
    assert refused.returncode != 0 and "never in kube-system" in refused.stderr
    refused = create(namespace, {**container, "image": "example/miner:1"})
    assert refused.returncode != 0 and "from Hearth's own image" in refused.stderr
    refused = create(namespace, {"name": "x", "image": cluster.image})
    assert refused.returncode != 0 and "runs Hearth's fetcher alone" in refused.stderr


def test_no_exec_attach_or_debug_into_the_fetcher(cluster: Cluster, namespace: str) -> None:
    """Either would be a root shell over the node's shared cache. The apiserver judges exec and attach
    before it reaches the kubelet: another container of the same pod passes admission (and then wants the
    protocol upgrade this plain POST lacks)."""
    body = fetcher(cluster, namespace)
    body["spec"]["restartPolicy"] = "Never"
    body["spec"]["containers"][0]["command"] = ["sleep", "600"]
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))

    async def connect(kind: str, container: str) -> ApiError:
        api = KubeAPI.connect(str(cluster.layout.kubeconfig))
        try:
            params = {"container": container, "command": "id", "stdout": "true"}
            with pytest.raises(ApiError) as refused:
                await api.request("POST", f"/api/v1/namespaces/{namespace}/pods/tenant-pod/{kind}", params=params)
            return refused.value
        finally:
            await api.aclose()

    for kind in ("exec", "attach"):
        denied = asyncio.run(connect(kind, "hearth-fetch"))
        assert denied.status == 403 and "no exec or attach into hearth-fetch" in denied.message, denied
        passed = asyncio.run(connect(kind, "app"))
        assert passed.status == 400 and "Upgrade request required" in passed.message, passed
    debug = {"name": "peek", "image": cluster.image, "command": ["sleep", "5"], "targetContainerName": "hearth-fetch"}
    patch = json.dumps({"spec": {"ephemeralContainers": [debug]}})
    result = cluster.kubectl(
        "patch", "pod", "-n", namespace, "tenant-pod", "--subresource=ephemeralcontainers", "-p", patch, check=False
    )
    assert result.returncode != 0 and "no debug container may target hearth-fetch" in result.stderr
