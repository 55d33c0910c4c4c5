"""The node-local model cache: where a model lives on a node, how nodes advertise it, what leaves it.

Pure. The webhook renders pods from these names (policies.render), the fetcher and the node agent
(`nodecache`) keep the folders they name.

A runtime with `spec.cache` gives each node one folder (a host path) shared by all its pods. A hub model
`hf://ORG/NAME` lives in `<root>/huggingface/ORG/NAME/` once a fetcher has downloaded it to a temporary
folder, checked every file against the sizes and hashes the hub reports, and renamed it into place; the
model container mounts the root read-only and loads that folder. The node agent labels each node with the
models it holds (`node_label`), which the webhook turns into a preferred node affinity, and removes the
least recently used models no pod uses when the cache passes its high watermark (`evictions`).
"""

from __future__ import annotations

import copy
import hashlib
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.modelsource import ModelSource

NODE_CACHE_MOUNT = "/var/lib/hearth/models"  # where the fetcher and the model container see the node's cache
CACHED_MODEL = "cache.hearth.dev/model"  # pod annotation: the cache entry the pod loads (the agent keeps it)
LABEL_PREFIX = "cache.hearth.dev/"
LABEL_VALUE = "true"
FETCH_CONTAINER = "hearth-fetch"
CACHE_VOLUME = "hearth-node-cache"
PREFERENCE_WEIGHT = 100
# Settings a hub client reads that the fetcher passes on from the model container (endpoint, token,
# timeouts); the cache location is the fetcher's own.
_HUB_PREFIXES = ("HF_", "HUGGING_FACE_")
_NOT_PASSED = frozenset({"HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_XET_CACHE", "HF_ASSETS_CACHE"})
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def cache_key(source: ModelSource) -> str | None:
    """The model's folder under the cache root, or None for a source the node cache does not hold."""
    if source.kind != "huggingface":
        return None
    return f"huggingface/{source.path}"


# Weights in other formats than safetensors: a repository that has safetensors often carries these too
# (pytorch_model*.bin, Llama's original/consolidated.*.pth, GGUF, ONNX, Flax), which a runtime never loads.
OTHER_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".tflite", ".ot")


def files_to_fetch(paths: Iterable[str]) -> list[str]:
    """What a runtime loads of a repository: everything, except that when safetensors weights are there
    the other weight formats stay on the hub (as vLLM's own download does); an 8B Llama repository is then
    16 GB instead of 32."""
    listed = list(paths)
    if not any(path.endswith(".safetensors") for path in listed):
        return listed
    return [path for path in listed if not path.endswith(OTHER_WEIGHTS)]


def entry_path(root: str, key: str) -> str:
    return posixpath.join(root, key)


def node_label(key: str) -> str:
    """The node label that says the node holds `key` complete (a label name is at most 63 characters and
    a model name may be longer, so it is a digest)."""
    return LABEL_PREFIX + "m-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def is_hub_setting(name: object) -> bool:
    return isinstance(name, str) and name.startswith(_HUB_PREFIXES) and name not in _NOT_PASSED


def hub_env(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The hub settings among env entries (values and valueFrom alike), later entries winning."""
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if is_hub_setting(entry.get("name")):
            found[str(entry["name"])] = dict(entry)
    return list(found.values())


def credentials_of(env: Sequence[Mapping[str, Any]], env_from: Sequence[Mapping[str, Any]]) -> str:
    """Where the hub token comes from, as an error message should name it."""
    for entry in reversed(env):
        if entry.get("name") in TOKEN_VARIABLES:
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name"):
                return f'Secret "{ref["name"]}" (key {ref.get("key", "?")}, variable {entry["name"]})'
            return f"the variable {entry['name']} of the model container"
    secrets = [str(s["secretRef"]["name"]) for s in env_from if (s.get("secretRef") or {}).get("name")]
    if secrets:
        return "envFrom Secret " + ", ".join(f'"{name}"' for name in secrets)
    return "none"


@dataclass(frozen=True)
class Entry:
    key: str
    size: int  # bytes
    last_used: float  # seconds since the epoch
    in_use: bool = False  # a pod on the node loads it, or a fetch holds it


def evictions(entries: Iterable[Entry], capacity: int, high_percent: int, low_percent: int) -> list[str]:
    """The keys to remove, least recently used first: none while the cache is at or below its high
    watermark, else until it is at or below the low one. An entry in use is never chosen, even if the
    cache then stays above the watermark (a full cache is better than a pod whose files vanish)."""
    listed = list(entries)
    used = sum(e.size for e in listed)
    if used * 100 <= capacity * high_percent:
        return []
    chosen: list[str] = []
    for entry in sorted(listed, key=lambda e: (e.last_used, e.key)):
        if used * 100 <= capacity * low_percent:
            break
        if entry.in_use:
            continue
        chosen.append(entry.key)
        used -= entry.size
    return chosen


def prefer_nodes_holding(affinity: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    """`affinity` with a preferred node affinity for nodes labelled as holding `key` (added once)."""
    out = {k: v for k, v in (affinity or {}).items()}
    node = dict(out.get("nodeAffinity") or {})
    preferred = list(node.get("preferredDuringSchedulingIgnoredDuringExecution") or [])
    term = {
        "weight": PREFERENCE_WEIGHT,
        "preference": {"matchExpressions": [{"key": node_label(key), "operator": "Exists"}]},
    }
    if term not in preferred:
        preferred.append(term)
    node["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    out["nodeAffinity"] = node
    return out


def fetch_container(
    env: Sequence[Mapping[str, Any]], env_from: Sequence[Mapping[str, Any]], uri: str, image: str
) -> dict[str, Any]:
    """The container that puts a model into the node's cache (or finds it there): Hearth's image, the hub
    settings and credentials among `env` (values and valueFrom alike) and `env_from`, the cache mounted
    writable (only here). Root, because the kubelet creates the host folder as root; no capability."""
    env_copy = [copy.deepcopy(dict(e)) for e in env]
    env_from_copy = [copy.deepcopy(dict(e)) for e in env_from]
    container: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": image,
        "command": ["hearth"],
        "args": [
            "cache",
            "fetch",
            f"--model={uri}",
            f"--root={NODE_CACHE_MOUNT}",
            f"--credentials={credentials_of(env_copy, env_from_copy)}",
        ],
        "env": hub_env(env_copy),
        "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": NODE_CACHE_MOUNT}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": False,
            "runAsUser": 0,
            "runAsGroup": 0,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if env_from_copy:
        container["envFrom"] = env_from_copy
    return container
