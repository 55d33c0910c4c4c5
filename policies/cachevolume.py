"""The node cache as a local PersistentVolume, for model namespaces at Pod Security `baseline` (which
refuses host path volumes): what `hearth cache volume` prints for a namespace.

A PersistentVolume is bound to one claim, and a claim lives in one namespace, so each model namespace gets
its own volume, and every one of them is the same folder of every node (a `local` volume whose node
affinity is any node: the kubelet bind-mounts that node's folder). The cache stays one per node, shared by
every namespace, as with the host path: the node agent keeps it, and the entries are bound to their hubs
(policies.modelcache). The volume is pre-bound to the namespace's claim `hearth-model-cache`, is kept
when the claim is deleted (Retain: the folder holds other namespaces' models), and belongs to the
StorageClass `hearth-node-cache` (no provisioner, WaitForFirstConsumer), which nothing provisions from.
"""

from __future__ import annotations

from typing import Any

from policies.modelcache import CACHE_CLAIM, NODE_CACHE_MOUNT
from policies.values import is_dns_label

STORAGE_CLASS = "hearth-node-cache"
_LABELS = {"app.kubernetes.io/part-of": "hearth", "app.kubernetes.io/component": "node-cache"}


def volume_name(namespace: str) -> str:
    return f"{CACHE_CLAIM}-{namespace}"


def local_cache_volumes(namespace: str, path: str = NODE_CACHE_MOUNT, size: str = "50Gi") -> list[dict[str, Any]]:
    """The StorageClass, the namespace's PersistentVolume of the node folder `path` (the runtimes'
    cache.hostPath, which the node agent creates on every node it runs on) and its claim."""
    if not is_dns_label(namespace):
        raise ValueError(f"{namespace!r} is not a namespace name")
    if not path.startswith("/"):
        raise ValueError(f"{path!r}: the node folder is an absolute path (the runtimes' cache.hostPath)")
    storage_class = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "labels": dict(_LABELS)},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }
    any_node = {"key": "kubernetes.io/hostname", "operator": "Exists"}
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume_name(namespace), "labels": {**_LABELS, "hearth.dev/namespace": namespace}},
        "spec": {
            "capacity": {"storage": size},
            # Pods on many nodes mount it, each its own node's folder (a local volume is never attached).
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "local": {"path": path},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": namespace,
                "name": CACHE_CLAIM,
            },
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [any_node]}]}},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CACHE_CLAIM, "namespace": namespace, "labels": dict(_LABELS)},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": STORAGE_CLASS,
            "volumeName": volume_name(namespace),
            "resources": {"requests": {"storage": size}},
        },
    }
    return [storage_class, volume, claim]
