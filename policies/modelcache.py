"""The node-local model cache: where a model lives on a node, how nodes advertise it, what leaves it.

Pure. The webhook renders pods from these names (policies.render), the fetcher and the node agent
(`nodecache`) keep the folders they name.

A runtime with `spec.cache` gives each node one folder (a host path) shared by all its pods. A hub model
`hf://ORG/NAME` fetched from the hub at ENDPOINT lives in `<root>/huggingface/<hub id>/ORG/NAME/` (and
`modelscope://ORG/NAME` in `<root>/modelscope/<hub id>/ORG/NAME/`) once a
fetcher has downloaded it to a temporary folder, checked every file against the sizes and hashes that hub
reports, and renamed it into place; the model container mounts the root read-only and loads that folder.
The entry is bound to its source: the hub id is the endpoint's host and a digest of the whole endpoint, so
a tenant that fetches from a hub of its own choosing fills an entry of that hub only, never the one other
tenants load from huggingface.co or the runtime's mirror. The node agent labels each node with the
models it holds (`node_label`), which the webhook turns into a preferred node affinity, and removes the
least recently used models no pod uses when the cache passes its high watermark (`evictions`).
"""

from __future__ import annotations

import copy
import hashlib
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.errors import ContractError, Problem
from policies.modelsource import ModelSource

NODE_CACHE_MOUNT = "/var/lib/hearth/models"  # where the fetcher and the model container see the node's cache
CACHED_MODEL = "cache.hearth.dev/model"  # pod annotation: the cache entry the pod loads (the agent keeps it)
LABEL_PREFIX = "cache.hearth.dev/"
LABEL_VALUE = "true"
FETCH_CONTAINER = "hearth-fetch"
CACHE_VOLUME = "hearth-node-cache"
CACHE_CLAIM = "hearth-model-cache"  # the claim a runtime with cache.volume PersistentVolumeClaim mounts
PREFERENCE_WEIGHT = 100


@dataclass(frozen=True)
class HubClient:
    """One hub the node cache fetches from: the source kind it serves (and the first folder of its
    entries), where it is by default, the variable that moves it, and the variables of its client that
    the fetcher receives (tokens first)."""

    kind: str
    default_endpoint: str
    endpoint_variable: str
    token_variables: tuple[str, ...]
    timeout_variables: tuple[str, ...] = ()
    domain_variable: str | None = None  # an older variable naming the host alone (https:// implied)


HUBS = {
    "huggingface": HubClient(
        "huggingface",
        "https://huggingface.co",
        "HF_ENDPOINT",
        ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
        ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"),
    ),
    "modelscope": HubClient(
        "modelscope",
        "https://modelscope.cn",
        "MODELSCOPE_ENDPOINT",
        ("MODELSCOPE_API_TOKEN",),
        domain_variable="MODELSCOPE_DOMAIN",  # the modelscope SDK's older name, still honoured by its client
    ),
}
DEFAULT_ENDPOINT = HUBS["huggingface"].default_endpoint
# What the fetcher receives of the model container's settings: its hub's tokens and client timeouts, by
# name, nothing else (no envFrom: an LD_PRELOAD or PYTHONPATH of the tenant's never runs in the root
# fetcher). The endpoint is an argument (`--endpoint`), so that the entry it fills is the endpoint's own.
# The admission policy hearth-node-cache-fetcher admits the variables of every hub.
FETCHER_VARIABLES = tuple(v for hub in HUBS.values() for v in (*hub.token_variables, *hub.timeout_variables))
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")


def normalize_endpoint(raw: str) -> str | None:
    """The endpoint as the entry's key uses it (scheme and host lower-case, no trailing slash), or None
    for a value that is not a plain http(s) URL (no user, query or fragment)."""
    text = raw.strip()
    if not _ENDPOINT.fullmatch(text):
        return None
    scheme, _, rest = text.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}" + (slash + path).rstrip("/")


def hub_id(endpoint: str) -> str:
    """The folder of one hub's entries: its host (readable in `hearth cache ls`) and a digest of the whole
    normalized endpoint (two paths on one host, or http and https, are two hubs)."""
    host = endpoint.partition("://")[2].partition("/")[0].replace(":", "_")
    return f"{host[:60]}-{hashlib.sha256(endpoint.encode()).hexdigest()[:12]}"


def holds(source: ModelSource) -> bool:
    """Whether the node cache holds models of this source (hub models: hf://ORG/NAME, modelscope://ORG/NAME)."""
    return source.kind in HUBS


def cache_key(source: ModelSource, endpoint: str) -> str | None:
    """The model's folder under the cache root, fetched from the hub at `endpoint` (normalized), or None
    for a source the node cache does not hold."""
    if not holds(source):
        return None
    return f"{source.kind}/{hub_id(endpoint)}/{source.path}"


def endpoint_of(env: Sequence[Mapping[str, Any]], where: str, kind: str = "huggingface") -> str:
    """The hub a cached model of `kind` is fetched from: the last of its endpoint variable in `env` (the
    runtime's, then the container's own; HF_ENDPOINT, MODELSCOPE_ENDPOINT), else the last MODELSCOPE_DOMAIN
    (a host, as the ModelScope client reads it), else the hub's own address. It must be a plain value: the
    entry is keyed by it when the pod is created, and a value from a Secret or ConfigMap is not known then."""
    hub = HUBS[kind]
    found: dict[str, str] = {}
    for entry in env:
        variable = str(entry.get("name"))
        if variable not in (hub.endpoint_variable, hub.domain_variable):
            continue
        if "valueFrom" in entry or not isinstance(entry.get("value"), str):
            raise ContractError(
                [
                    Problem(
                        f"{where}.env[{variable}]",
                        None,
                        "with the node cache, the hub endpoint must be a plain value (the cache entry is bound "
                        "to it when the pod is created)",
                        'write it as value: "https://..." (or set it on the InferenceRuntime), not valueFrom',
                    )
                ]
            )
        value = str(entry["value"])
        if variable == hub.domain_variable and "://" not in value:
            value = f"https://{value}"
        normalized = normalize_endpoint(value)
        if normalized is None:
            raise ContractError(
                [
                    Problem(
                        f"{where}.env[{variable}]",
                        str(entry["value"]),
                        "must be an http(s) URL with a host and an optional path, nothing else",
                        "write it as https://HOST[:PORT][/PATH]",
                    )
                ]
            )
        found[variable] = normalized
    return found.get(hub.endpoint_variable) or found.get(str(hub.domain_variable)) or hub.default_endpoint


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


def overlaps(path: str, cache: str) -> bool:
    """Whether a host path is the cache, a folder inside it or a folder around it, however it is written
    (`//var/lib/hearth/models/`, `/var/./lib/hearth/models`); a path with `..` is taken to overlap (the
    apiserver refuses those anyway)."""
    ours, theirs = _segments(cache), _segments(path)
    if ".." in theirs:
        return True
    shared = min(len(ours), len(theirs))
    return ours[:shared] == theirs[:shared]


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def entry_path(root: str, key: str) -> str:
    return posixpath.join(root, key)


def node_label(key: str) -> str:
    """The node label that says the node holds `key` complete (a label name is at most 63 characters and
    a model name may be longer, so it is a digest)."""
    return LABEL_PREFIX + "m-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def fetcher_env(
    env: Iterable[Mapping[str, Any]], env_from: Iterable[Mapping[str, Any]], kind: str = "huggingface"
) -> list[dict[str, Any]]:
    """The fetcher's environment for a model of hub `kind`: that hub's token and timeout variables from
    `env` (values and valueFrom alike), and the tokens an `envFrom` Secret or ConfigMap may hold, as
    references to that one key (optional: the source may not have it). Later entries win, as in a
    container; `env` wins over `envFrom`."""
    hub = HUBS[kind]
    wanted = (*hub.token_variables, *hub.timeout_variables)
    found: dict[str, dict[str, Any]] = {}
    for source in env_from:
        prefix = str(source.get("prefix") or "")
        for from_kind, ref_kind in (("secretRef", "secretKeyRef"), ("configMapRef", "configMapKeyRef")):
            name = (source.get(from_kind) or {}).get("name")
            if not name:
                continue
            for variable in hub.token_variables:
                if variable.startswith(prefix) and len(variable) > len(prefix):
                    ref = {"name": name, "key": variable[len(prefix) :], "optional": True}
                    found[variable] = {"name": variable, "valueFrom": {ref_kind: ref}}
    for entry in env:
        if entry.get("name") in wanted:
            found[str(entry["name"])] = copy.deepcopy(dict(entry))
    return list(found.values())


def credentials_of(
    env: Sequence[Mapping[str, Any]], env_from: Sequence[Mapping[str, Any]], kind: str = "huggingface"
) -> str:
    """Where the token of the hub of `kind` comes from, as an error message should name it."""
    for entry in reversed(env):
        if entry.get("name") in HUBS[kind].token_variables:
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


def cache_volume(host_path: str, volume: str) -> dict[str, Any]:
    """The pod volume of the node cache: the host folder itself, or (volume PersistentVolumeClaim) the
    namespace's claim CACHE_CLAIM, bound to a local PersistentVolume of that folder (`hearth cache volume`)."""
    if volume == "PersistentVolumeClaim":
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": CACHE_CLAIM}}
    return {"name": CACHE_VOLUME, "hostPath": {"path": host_path, "type": "DirectoryOrCreate"}}


def fetch_container(
    env: Sequence[Mapping[str, Any]],
    env_from: Sequence[Mapping[str, Any]],
    source: ModelSource,
    endpoint: str,
    image: str,
    max_age: int | None = None,
) -> dict[str, Any]:
    """The container that puts a model into the node's cache (or finds it there): Hearth's image, the hub
    `endpoint` as an argument, the token and timeouts among `env` and `env_from` (fetcher_env), the cache
    mounted writable (only here), `max_age` (seconds) the runtime's cache.maxAgeSeconds. Root, because the
    kubelet creates the host folder as root; no capability. The manifests' admission policy
    hearth-node-cache-fetcher admits exactly this shape."""
    return {
        "name": FETCH_CONTAINER,
        "image": image,
        "command": ["hearth"],
        "args": [
            "cache",
            "fetch",
            f"--model={source.uri}",
            f"--endpoint={endpoint}",
            f"--root={NODE_CACHE_MOUNT}",
            f"--credentials={credentials_of(env, env_from, source.kind)}",
            *([f"--max-age={max_age}"] if max_age is not None else []),
        ],
        "env": fetcher_env(env, env_from, source.kind),
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
