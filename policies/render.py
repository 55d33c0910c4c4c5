"""Pod rendering: a user's pod (from an annotated template) becomes a runtime pod.

Pure: dicts in, dicts out. Pod bodies stay plain dicts so that fields Hearth does not know survive.
Rendering is idempotent: a pod that carries the `hearth.dev/rendered` annotation is returned unchanged,
and every merge below replaces by name, so even a re-render of a stripped pod adds nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from policies.adoption import (
    HUB_DEFAULTS,
    SHM,
    SIDECAR_CONTAINER,
    clean_path,
    model_container,
    user_cache,
)
from policies.annotations import PREFIX, RENDERED, PodSpec
from policies.errors import ContractError, Problem
from policies.modelcache import (
    CACHE_VOLUME,
    CACHED_MODEL,
    DEFAULT_ENDPOINT,
    NODE_CACHE_MOUNT,
    cache_key,
    cache_volume,
    endpoint_of,
    entry_path,
    fetch_container,
    holds,
    overlaps,
    prefer_nodes_holding,
)
from policies.modelsource import CACHE_DIR, PVC_MOUNT, ModelSource
from policies.patch import json_copy
from policies.runtime import InferenceRuntime, Probe, fill_template
from policies.stamp import Stamp

# Deployments must name an image for every container; the user's contract leaves the model container's
# to the runtime, so the webhook writes this placeholder into the template and replaces it in each pod.
PLACEHOLDER_IMAGE = "hearth.dev/placeholder:filled-by-runtime"
RUNTIME_LABEL = PREFIX + "runtime"
VENDOR_LABEL = PREFIX + "vendor"
Obj = dict[str, Any]


# Hearth's image as manifests/ names it; the sidecar runs from it unless told otherwise.
SHIPPED_IMAGE = "ghcr.io/hearth-project/hearth:0.1.0"


@dataclass(frozen=True)
class RenderSettings:
    sidecar_image: str = SHIPPED_IMAGE
    sidecar_port: int = 8090
    sidecar_cpu: str = "100m"
    sidecar_memory: str = "128Mi"


SIDECAR_UID = 65532  # the user of Hearth's image (Containerfile, devcluster/image.py)
DRAINED_PATH = "/drained"  # the sidecar's wait for its own drain, which the model container's preStop calls


def render_pod(
    pod: Obj,
    runtime: InferenceRuntime | None,
    spec: PodSpec,
    served_name: str,
    settings: RenderSettings,
    accelerators: Iterable[str],
    caches: Iterable[str],
) -> Obj:
    """Return the pod Hearth runs for `pod`; `pod` itself is never modified. With a model URI the model
    container is rendered from `runtime`; without one (keep mode, `runtime` None) the containers stay as
    written and only the sidecar, the drain hook and the grace period are added. `accelerators` are the
    resources of every known runtime, which tell the model container apart (policies.adoption); `caches`
    their node caches' host paths, which no pod may mount by a host path of its own. Nothing in the result
    is random or secret: rendering a rendered pod again changes nothing."""
    if RENDERED in (pod.get("metadata") or {}).get("annotations", {}):
        same: Obj = json_copy(pod)
        return same
    resources = set(accelerators) | ({runtime.spec.accelerator.resource} if runtime else set())
    containers_in = (pod.get("spec") or {}).get("containers") or []
    name = model_container(containers_in, spec.container, resources, "metadata.annotations")
    out = _writable(pod, name)
    containers: list[Obj] = out.setdefault("spec", {}).setdefault("containers", [])
    model = next(c for c in containers if c.get("name") == name)
    _refuse_cache_host_paths(out.setdefault("spec", {}), caches)
    if spec.model is None or runtime is None:
        stamp = _keep(out, model, spec, served_name, settings)
    else:
        stamp = _from_runtime(out, model, runtime, spec, spec.model, served_name, settings)
    out.setdefault("metadata", {}).setdefault("annotations", {})[RENDERED] = stamp.annotation()
    return out


KEEP = "keep"  # the stamp's runtime in keep mode: no runtime rendered the pod
KEEP_DRAIN_SECONDS = 300
KEEP_SHUTDOWN_SECONDS = 30
DEFAULT_PORT = 8000


def _keep(out: Obj, model: Obj, spec: PodSpec, served_name: str, settings: RenderSettings) -> Stamp:
    """Keep mode: the user's containers run as written (image, command, env, volumes, probes); the sidecar
    goes in front of the model container's port, whose preStop drains it (unless the user has a preStop of
    their own, which is kept), and the grace period covers the drain."""
    pod_spec = out["spec"]
    ports = [p.get("containerPort") for p in model.get("ports") or [] if isinstance(p, dict)]
    port = spec.port or next((int(p) for p in ports if isinstance(p, int)), DEFAULT_PORT)
    theirs = [c for c in pod_spec["containers"] if c.get("name") != SIDECAR_CONTAINER]
    taken = {p.get("containerPort") for c in theirs for p in c.get("ports") or [] if isinstance(p, dict)}
    if port == settings.sidecar_port or settings.sidecar_port in taken:
        raise ContractError(
            [
                Problem(
                    "spec.template.spec.containers[*].ports",
                    str(settings.sidecar_port),
                    "is the port of Hearth's gateway sidecar, which shares the pod's network",
                    "move your server to another port",
                )
            ]
        )
    drain = int(spec.drain_timeout if spec.drain_timeout is not None else KEEP_DRAIN_SECONDS)
    lifecycle = model.setdefault("lifecycle", {})
    hook = (lifecycle.get("preStop") or {}).get("httpGet") or {}
    ours = hook.get("path") in ("/drain", DRAINED_PATH) and hook.get("port") == settings.sidecar_port
    if "preStop" not in lifecycle or ours:
        lifecycle["preStop"] = _drain_hook(settings)  # the user's own hook is kept
    probe = ((model.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
    health = probe if isinstance(probe, str) and probe.startswith("/") else "/health"
    _put_by_name(pod_spec["containers"], _sidecar(port, drain, settings, health))
    grace = pod_spec.get("terminationGracePeriodSeconds")
    pod_spec["terminationGracePeriodSeconds"] = max(
        grace if isinstance(grace, int) else 30, drain + KEEP_SHUTDOWN_SECONDS
    )
    return Stamp(
        runtime=KEEP, stamp=KEEP, served_name=served_name, sidecar_port=settings.sidecar_port, runtime_port=port
    )


def _from_runtime(
    out: Obj,
    model: Obj,
    runtime: InferenceRuntime,
    spec: PodSpec,
    source: ModelSource,
    served_name: str,
    settings: RenderSettings,
) -> Stamp:
    """Render mode: the model container filled in from `runtime`, the user's spec merged (policies.adoption)."""
    rt = runtime.spec
    if rt.container.port == settings.sidecar_port:
        raise ContractError(
            [
                Problem(
                    f'InferenceRuntime "{runtime.name}" spec.container.port',
                    str(rt.container.port),
                    f"collides with the Hearth gateway sidecar's port {settings.sidecar_port}",
                    "give the runtime another port",
                )
            ]
        )
    pod_spec = out["spec"]
    drain = int(spec.drain_timeout if spec.drain_timeout is not None else rt.lifecycle.drain_timeout_seconds)
    ours, key, endpoint = _fill_model_container(model, runtime, spec, source, served_name, settings)
    # The sidecar's readiness follows the runtime's own health path (vLLM's /health; llama-cpp-python's
    # server has none), as it follows the container's probe in keep mode.
    _put_by_name(pod_spec["containers"], _sidecar(rt.container.port, drain, settings, rt.probes.path))
    if key is not None and rt.cache is not None:
        fetcher = _fetcher(model, source, endpoint, settings, rt.cache.max_age_seconds)
        ours += fetcher["volumeMounts"]
        _put_by_name(pod_spec.setdefault("initContainers", []), fetcher)
        out.setdefault("metadata", {}).setdefault("annotations", {})[CACHED_MODEL] = key
        pod_spec["affinity"] = prefer_nodes_holding(pod_spec.get("affinity"), key)
    foreign = _foreign_mounts(pod_spec, ours, _add_volumes(pod_spec, runtime, spec, source, ours))
    if foreign:
        raise ContractError(foreign)
    pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **rt.accelerator.node_selector}
    tolerations: list[Obj] = pod_spec.setdefault("tolerations", [])
    for toleration in rt.accelerator.tolerations:
        wanted = toleration.model_dump(by_alias=True, exclude_none=True)
        if wanted not in tolerations:
            tolerations.append(wanted)
    if not tolerations:
        del pod_spec["tolerations"]
    if not pod_spec["nodeSelector"]:
        del pod_spec["nodeSelector"]
    pod_spec["terminationGracePeriodSeconds"] = drain + rt.lifecycle.shutdown_seconds
    labels = out.setdefault("metadata", {}).setdefault("labels", {})
    labels[RUNTIME_LABEL] = runtime.name
    labels[VENDOR_LABEL] = rt.vendor
    return Stamp(
        runtime=runtime.name,
        stamp=runtime.stamp,
        served_name=served_name,
        sidecar_port=settings.sidecar_port,
        runtime_port=rt.container.port,
    )


RESERVED_VOLUME_PREFIX = "hearth-"
_MOUNTING = ("initContainers", "containers", "ephemeralContainers")


def reserved_volume_problems(pod_spec: object, where: str) -> list[Problem]:
    """A template's volumes and mounts that use Hearth's names (`hearth-shm`, `hearth-cache`,
    `hearth-model`, `hearth-host-N`: the runtime's host paths). Hearth mounts its volumes only where and as
    it renders them, read-only for host paths and models: a second mount, or one in another container,
    would get them writable."""
    problems: list[Problem] = []
    for index, volume in enumerate(_dicts(pod_spec, "volumes")):
        name = volume.get("name")
        if isinstance(name, str) and name.startswith(RESERVED_VOLUME_PREFIX):
            problems.append(
                Problem(
                    f"{where}.volumes[{index}].name",
                    name,
                    f"volume names starting with {RESERVED_VOLUME_PREFIX} are Hearth's own",
                    "rename the volume",
                )
            )
    for kind, container, index, mount in _mounts(pod_spec):
        name = mount.get("name")
        if isinstance(name, str) and name.startswith(RESERVED_VOLUME_PREFIX):
            problems.append(_foreign_mount(where, kind, container, index, name))
    return problems


def _foreign_mounts(pod_spec: Obj, ours: list[Obj], volumes: set[str]) -> list[Problem]:
    """Mounts of the volumes Hearth rendered other than Hearth's own mounts (`ours`, by identity)."""
    return [
        _foreign_mount("spec", kind, container, index, str(mount.get("name")))
        for kind, container, index, mount in _mounts(pod_spec)
        if mount.get("name") in volumes and not any(mount is own for own in ours)
    ]


def _foreign_mount(where: str, kind: str, container: Obj, index: int, name: str) -> Problem:
    return Problem(
        f'{where}.{kind}["{container.get("name")}"].volumeMounts[{index}].name',
        name,
        "Hearth's volumes are mounted only by Hearth, where and as it renders them",
        "remove the mount (Hearth mounts what the runtime needs into the model container)",
    )


def _mounts(pod_spec: object) -> Iterable[tuple[str, Obj, int, Obj]]:
    for kind in _MOUNTING:
        for container in _dicts(pod_spec, kind):
            for index, mount in enumerate(_dicts(container, "volumeMounts")):
                yield kind, container, index, mount


def _dicts(obj: object, key: str) -> list[Obj]:
    items = obj.get(key) if isinstance(obj, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _writable(pod: Obj, model: str) -> Obj:
    """A copy of `pod` that rendering may change: the parts it edits are copied (metadata labels and
    annotations, the spec's lists, the whole model container); everything else is shared with `pod`, so
    that the diff skips it by identity instead of walking it."""
    out = dict(pod)
    meta = dict(out.get("metadata") or {})
    out["metadata"] = meta
    for key in ("labels", "annotations"):
        if isinstance(meta.get(key), dict):
            meta[key] = dict(meta[key])
    spec = dict(out.get("spec") or {})
    out["spec"] = spec
    for key in ("containers", "initContainers", "volumes", "tolerations"):
        if isinstance(spec.get(key), list):
            spec[key] = list(spec[key])
    containers = spec.get("containers") or []
    for index, container in enumerate(containers):
        if isinstance(container, dict) and container.get("name") == model:
            containers[index] = json_copy(container)
    return out


def _fill_model_container(
    model: Obj,
    runtime: InferenceRuntime,
    spec: PodSpec,
    source: ModelSource,
    served_name: str,
    settings: RenderSettings,
) -> tuple[list[Obj], str | None, str]:
    """Fills the model container in; returns the mounts of Hearth's volumes it put there, the node cache
    entry it loads (None: no node cache) and the hub endpoint that entry is fetched from."""
    rt = runtime.spec
    port = rt.container.port
    caches = {k: user_cache(model, k) for k in source.env if k in HUB_DEFAULTS}
    kept_cache = any(caches.values())  # the user mounts a hub cache already: it is used, not replaced
    runtime_env = [{"name": e.name, "value": e.value} for e in rt.container.env]
    cached = rt.cache is not None and not kept_cache and holds(source)
    endpoint = endpoint_of(runtime_env + _dicts(model, "env"), MODEL_WHERE, source.kind) if cached else DEFAULT_ENDPOINT
    key = cache_key(source, endpoint) if cached else None
    variables = {
        "model.path": source.path if key is None else entry_path(NODE_CACHE_MOUNT, key),
        "model.name": served_name,
        "model.uri": source.uri,
        "port": str(port),
        "accelerators": str(spec.accelerators),
    }
    model["image"] = rt.container.image
    if rt.container.command is not None:
        model["command"] = [fill_template(a, variables) for a in rt.container.command]
    model["args"] = [fill_template(a, variables) for a in rt.container.args] + list(spec.extra_args)
    source_env = [{"name": k, "value": caches.get(k) or v} for k, v in source.env.items()]
    if key is not None:  # the fetcher has put the model on the node's disk: the runtime asks no hub
        source_env = [{"name": "HF_HUB_OFFLINE", "value": "1"}]
    model["env"] = _merged(runtime_env + source_env, model.get("env") or [])
    ports = [p for p in model.get("ports") or [] if p.get("containerPort") != port and p.get("name") != "runtime"]
    model["ports"] = [{"name": "runtime", "containerPort": port, "protocol": "TCP"}, *ports]
    resources = model.setdefault("resources", {})
    # The runtime's CPU and memory fill only what the container says nothing of: a Deployment that sets a
    # memory limit alone gets no runtime request above it (request = limit, as Kubernetes defaults it).
    own = {str(name) for section in resources.values() if isinstance(section, dict) for name in section}
    for section, values in (rt.container.resources or {}).items():
        for name, value in values.items():
            if name not in own:
                resources.setdefault(section, {})[name] = value
    count = str(spec.accelerators)
    resources.setdefault("limits", {})[rt.accelerator.resource] = count
    resources.setdefault("requests", {})[rt.accelerator.resource] = count
    probes = rt.probes
    model["startupProbe"] = _http_probe(probes.path, port, probes.startup)
    model["readinessProbe"] = _http_probe(probes.path, port, probes.readiness)
    model["livenessProbe"] = _http_probe(probes.path, port, probes.liveness)
    # The runtime is stopped only after the sidecar has drained every open stream: the kubelet waits for
    # this hook, and the sidecar answers it as soon as nothing is in flight (no fixed sleep).
    model.setdefault("lifecycle", {})["preStop"] = _drain_hook(settings)
    mounts: list[Obj] = model.setdefault("volumeMounts", [])
    user_paths = {clean_path(m.get("mountPath")) for m in mounts}
    ours: list[Obj] = [] if SHM in user_paths else [{"name": "hearth-shm", "mountPath": SHM}]  # the user's wins
    if key is not None:
        ours.append({"name": CACHE_VOLUME, "mountPath": NODE_CACHE_MOUNT, "readOnly": True})
    elif source.needs_cache and not kept_cache:
        ours.append({"name": "hearth-cache", "mountPath": CACHE_DIR})
    if source.claim is not None:
        ours.append({"name": "hearth-model", "mountPath": PVC_MOUNT, "readOnly": True})
    for index, host in enumerate(rt.accelerator.host_mounts):
        ours.append({"name": f"hearth-host-{index}", "mountPath": host.mount_path or host.path, "readOnly": True})
    # One mount per path: where Hearth mounts (the runtime's host paths, the model's claim), the user's own
    # mount at that path is left out of the pod.
    taken = {clean_path(m["mountPath"]) for m in ours}
    mounts[:] = [m for m in mounts if clean_path(m.get("mountPath")) not in taken]
    for mount in ours:
        _put_by_name(mounts, mount)
    return ours, key, endpoint


MODEL_WHERE = "spec.template.spec.containers[model]"


def _refuse_cache_host_paths(pod_spec: Obj, caches: Iterable[str]) -> None:
    problems = cache_path_problems(pod_spec, caches)
    if problems:
        raise ContractError(problems)


def cache_path_problems(pod_spec: object, caches: Iterable[str]) -> list[Problem]:
    """A pod may not mount a node cache (or a folder around it) by a host path of its own, in either mode:
    it would write into the models every other pod of the node loads. (The manifests' admission policy
    hearth-node-cache-host-path holds the same line for pods that never reach this webhook.)"""
    problems = []
    caches = list(caches)
    for index, volume in enumerate(_dicts(pod_spec, "volumes")):
        path = (volume.get("hostPath") or {}).get("path")
        if volume.get("name") == CACHE_VOLUME or not isinstance(path, str) or not path:
            continue
        for cache in caches:
            if overlaps(path, cache):
                problems.append(
                    Problem(
                        f"spec.template.spec.volumes[{index}].hostPath.path",
                        path,
                        f"overlaps the node's model cache {cache}, which only Hearth's fetcher writes",
                        "remove the volume (a rendered model container gets its model read-only from Hearth)",
                    )
                )
                break
    return problems


def _fetcher(model: Obj, source: ModelSource, endpoint: str, settings: RenderSettings, max_age: int | None) -> Obj:
    """The init container that puts the model into the node's cache (or finds it there) before the runtime
    starts, with the model container's hub token and timeouts (no other setting of the tenant's)."""
    env, env_from = _dicts(model, "env"), _dicts(model, "envFrom")
    return fetch_container(env, env_from, source, endpoint, settings.sidecar_image, max_age)


def _drain_hook(settings: RenderSettings) -> Obj:
    """The model container's preStop: the runtime is stopped only after the sidecar has drained every open
    stream. The kubelet sends the sidecar its SIGTERM (which starts the drain) while this hook waits on the
    sidecar's `/drained`, which answers as soon as nothing is in flight: no fixed sleep, and nothing a
    caller could use to drain a pod (the hook carries no secret, and /drained starts nothing)."""
    return {"httpGet": {"path": DRAINED_PATH, "port": settings.sidecar_port}}


def _sidecar(runtime_port: int, drain: int, settings: RenderSettings, health: str = "/health") -> Obj:
    port = settings.sidecar_port
    health_flag = [] if health == "/health" else [f"--health-path={health}"]
    return {
        "name": SIDECAR_CONTAINER,
        "image": settings.sidecar_image,
        "command": ["hearth"],
        "args": [
            "gateway",
            "sidecar",
            f"--port={port}",
            f"--upstream=http://127.0.0.1:{runtime_port}",
            f"--drain-timeout={drain}s",
            *health_flag,
        ],
        "ports": [{"name": "hearth-http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 2, "failureThreshold": 1},
        "resources": {
            "requests": {"cpu": settings.sidecar_cpu, "memory": settings.sidecar_memory},
            "limits": {"memory": settings.sidecar_memory},
        },
        # Non-root whatever the pod runs its model as (vLLM images often run as root): the image's own user.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": SIDECAR_UID,
            "runAsGroup": SIDECAR_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _add_volumes(
    pod_spec: Obj, runtime: InferenceRuntime, spec: PodSpec, source: ModelSource, ours: list[Obj]
) -> set[str]:
    """Adds Hearth's volumes that its mounts (`ours`) use; returns their names."""
    volumes: list[Obj] = pod_spec.setdefault("volumes", [])
    before = {id(v) for v in volumes}
    used = {m["name"] for m in ours}
    if "hearth-shm" in used:
        _put_by_name(volumes, {"name": "hearth-shm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}})
    if "hearth-cache" in used:
        cache: Obj = {"sizeLimit": spec.cache_size} if spec.cache_size else {}
        _put_by_name(volumes, {"name": "hearth-cache", "emptyDir": cache})
    if CACHE_VOLUME in used and runtime.spec.cache is not None:
        _put_by_name(volumes, cache_volume(runtime.spec.cache.host_path, runtime.spec.cache.volume))
    if source.claim is not None:
        claim = {"claimName": source.claim, "readOnly": True}
        _put_by_name(volumes, {"name": "hearth-model", "persistentVolumeClaim": claim})
    for index, host in enumerate(runtime.spec.accelerator.host_mounts):
        host_path: Obj = {"path": host.path, "type": host.type} if host.type else {"path": host.path}
        _put_by_name(volumes, {"name": f"hearth-host-{index}", "hostPath": host_path})
    return {str(v["name"]) for v in volumes if id(v) not in before}


def _http_probe(path: str, port: int, probe: Probe) -> Obj:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": probe.period_seconds,
        "failureThreshold": probe.failure_threshold,
        "timeoutSeconds": probe.timeout_seconds,
    }


def _put_by_name(items: list[Obj], item: Obj) -> None:
    """Replace the entry of the same name, or append: the merge that keeps rendering idempotent."""
    for index, existing in enumerate(items):
        if existing.get("name") == item["name"]:
            items[index] = item
            return
    items.append(item)


def _merged(base: Iterable[Obj], overrides: Iterable[Obj]) -> list[Obj]:
    merged: dict[str, Obj] = {}
    for entry in [*base, *overrides]:
        merged[str(entry.get("name"))] = entry
    return list(merged.values())
