"""The tenant boundary on the live cluster: the admission policies Hearth installs (manifests/
node-cache-policy.yaml, stamp-policy.yaml, privilege-policy.yaml) judged by the real apiserver, for pods
that never reach Hearth's webhook, and Hearth's own ServiceAccounts held to their jobs.

Pods are sent with a server-side dry run: the apiserver runs every admission step (the webhooks and the
policies) and stores nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devcluster.cluster import Cluster

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
