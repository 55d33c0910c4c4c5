"""The whole contract at once: validate an annotated Deployment, and render one of its pods."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.adoption import (
    CONTAINER_KEY,
    MODEL_CONTAINER,
    accelerator_resources,
    clean_path,
    dropped_command,
    engine_warnings,
    model_container,
    reported_name,
)
from policies.annotations import (
    ENABLED_LABEL,
    PREFIX,
    RENDERED,
    TEMPLATE_WHERE,
    PodSpec,
    ScaleSpec,
    parse_pod,
    parse_scale,
)
from policies.errors import Collector, ContractError, Problem
from policies.modelcache import CACHED_MODEL, endpoint_of, holds
from policies.modelsource import PVC_MOUNT, ModelSource
from policies.patch import json_copy
from policies.render import (
    PLACEHOLDER_IMAGE,
    RenderSettings,
    cache_path_problems,
    render_pod,
    reserved_volume_problems,
)
from policies.runtime import InferenceRuntime
from policies.selection import select_runtime

SCALER_MANAGER = "hearth-scaler"
POD_WHERE = "metadata.annotations"


@dataclass(frozen=True)
class Verdict:
    scale: ScaleSpec
    pod: PodSpec
    warnings: tuple[str, ...]


def validate_deployment(obj: Mapping[str, Any], runtimes: Sequence[InferenceRuntime] | None = None) -> Verdict:
    """Every problem of an annotated Deployment at once (ContractError), or its parsed spec and warnings.

    With `runtimes` given, a Deployment that no current runtime can serve gets a warning, not an error:
    under GitOps the runtime may be applied a moment later."""
    errors = Collector()
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    template = _mapping(spec.get("template"))
    template_meta = _mapping(template.get("metadata"))
    scale = parse_scale(_str_map(meta.get("annotations")), errors)
    pod = parse_pod(_str_map(template_meta.get("annotations")), errors)
    containers = [c for c in _mapping(template.get("spec")).get("containers") or [] if isinstance(c, Mapping)]
    resources = accelerator_resources(runtimes or ())
    named = _str_map(template_meta.get("annotations")).get(CONTAINER_KEY)
    model_name: str | None = None
    try:
        model_name = model_container(containers, named.strip() if named else None, resources, TEMPLATE_WHERE)
    except ContractError as exc:
        errors.problems.extend(exc.problems)
    errors.problems.extend(reserved_volume_problems(template.get("spec"), "spec.template.spec"))
    model = next((c for c in containers if c.get("name") == model_name), {})
    errors.problems.extend(_node_cache_problems(template.get("spec"), model, pod, runtimes or ()))
    labels = _str_map(template_meta.get("labels"))
    if labels.get(ENABLED_LABEL) != "true":
        errors.add(
            f'spec.template.metadata.labels["{ENABLED_LABEL}"]',
            labels.get(ENABLED_LABEL),
            'must be "true" so that the webhook renders the pods',
            f'add the label {ENABLED_LABEL}: "true" to the pod template',
        )
    errors.raise_if_any()
    if pod is None:  # parse_pod returns None only after recording a problem
        raise RuntimeError("pod annotations unparsed without a recorded problem")
    warnings = list(_replica_warnings(obj, scale))
    if scale.scale_down_delay < 30:
        warnings.append(
            f"{PREFIX}scale-down-delay is {scale.scale_down_delay:g}s: a model restart costs minutes, so a delay "
            "this short trades accelerator-hours for frequent cold starts"
        )
    if pod.model is None:
        warnings.extend(_keep_warnings(model, pod, str(meta.get("name") or "")))
    else:
        warnings.extend(_render_warnings(model, pod, pod.model, runtimes))
    return Verdict(scale=scale, pod=pod, warnings=tuple(warnings))


def _node_cache_problems(
    pod_spec: object, model: Mapping[str, Any], pod: PodSpec | None, runtimes: Sequence[InferenceRuntime]
) -> list[Problem]:
    """Said at apply, not only when the pods are refused: a host path over a node cache (either mode), and
    a hub endpoint that is not a plain URL value for a model the cache would hold (its entry is bound to
    the endpoint when the pod is created)."""
    caches = _cache_paths(runtimes)
    problems = cache_path_problems(pod_spec, caches)
    if caches and pod is not None and pod.model is not None and holds(pod.model):
        env = [e for e in model.get("env") or [] if isinstance(e, Mapping)]
        try:
            endpoint_of(env, f"spec.template.spec.containers[{model.get('name')}]", pod.model.kind)
        except ContractError as exc:
            problems.extend(exc.problems)
    return problems


def _keep_warnings(model: Mapping[str, Any], pod: PodSpec, deployment: str) -> list[str]:
    """Keep mode: the front door asks the server for the first served name; a server that reports another
    name answers 404, so say which name its command line suggests. A preStop of the user's own is kept."""
    warnings = []
    reported = reported_name(model)
    if pod.served_name is None and reported is not None and reported != deployment:
        warnings.append(
            f'keep mode: the front door asks the server for model "{deployment}", but its command line serves '
            f'"{reported}"; add {PREFIX}served-name: "{reported}" (clients may still use "{deployment}")'
        )
    warnings.extend(engine_warnings(model))
    if "preStop" in (model.get("lifecycle") or {}):
        warnings.append(
            f'container "{model.get("name")}" has a preStop hook of its own, which is kept: Hearth cannot drain '
            "open streams before it stops (remove the hook to let Hearth drain them)"
        )
    return warnings


def _render_warnings(
    model: Mapping[str, Any], pod: PodSpec, source: ModelSource, runtimes: Sequence[InferenceRuntime] | None
) -> list[str]:
    """Render mode: what the runtime replaces or leaves out of the user's model container."""
    warnings = []
    image = model.get("image")
    if image and image != PLACEHOLDER_IMAGE:
        warnings.append(f'container "{model.get("name")}" sets image {image}, which the InferenceRuntime replaces')
    dropped = dropped_command(model)
    if dropped:
        warnings.append(dropped)
    if runtimes is not None:
        try:
            runtime = select_runtime(pod, runtimes)
        except ContractError as exc:
            warnings.append(f"no runtime can serve these pods yet, so they will be refused: {exc.message}")
        else:
            warnings.extend(_mounts_left_out(model, runtime, source))
    return warnings


def _mounts_left_out(model: Mapping[str, Any], runtime: InferenceRuntime, source: ModelSource) -> list[str]:
    """The user's mounts that rendering leaves out because Hearth mounts the same path (policies.adoption)."""
    theirs = {
        clean_path(h.mount_path or h.path): "the runtime's host path" for h in runtime.spec.accelerator.host_mounts
    }
    if source.claim is not None:
        theirs[PVC_MOUNT] = f"the model's claim {source.claim}"
    return [
        f'container "{model.get("name")}": the mount of volume {m.get("name")} at {m.get("mountPath")} is left out: '
        f"Hearth mounts {theirs[clean_path(m.get('mountPath'))]} there"
        for m in model.get("volumeMounts") or []
        if isinstance(m, Mapping) and clean_path(m.get("mountPath")) in theirs
    ]


def replicas_set_by_user(obj: Mapping[str, Any]) -> bool:
    """Whether the user's manifest holds `replicas:`. The apiserver defaults the field before admission (and
    Update-operation managedFields then claim it), so the intent is read from kubectl's last-applied
    annotation, else from server-side-apply managedFields, else from a value other than the default 1,
    else (a plain file, as `hearth render` reads it) from the field's presence."""
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    last = _str_map(meta.get("annotations")).get("kubectl.kubernetes.io/last-applied-configuration")
    managed = [e for e in meta.get("managedFields") or [] if isinstance(e, Mapping)]
    applied = [e for e in managed if e.get("operation") == "Apply" and e.get("manager") != SCALER_MANAGER]
    if last is not None:
        try:
            return "replicas" in _mapping(_mapping(json.loads(last)).get("spec"))
        except ValueError:
            return False
    if applied:
        return any("f:replicas" in _mapping(_mapping(e.get("fieldsV1")).get("f:spec")) for e in applied)
    if managed:
        return bool(spec.get("replicas", 1) != 1) and not any(e.get("manager") == SCALER_MANAGER for e in managed)
    return "replicas" in spec


def _replica_warnings(obj: Mapping[str, Any], scale: ScaleSpec) -> list[str]:
    """A `replicas:` written by the user fights the scaler (as with an HPA)."""
    if not replicas_set_by_user(obj):
        return []
    return [
        f"spec.replicas is set, but the Hearth scaler owns it ({scale.min_replicas}..{scale.max_replicas}); "
        "remove it from the manifest (under Argo CD, also ignore /spec/replicas) so applies do not fight the scaler"
    ]


def with_scaler_defaults(deployment: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """What the mutating webhook gives an opted-in Deployment: the placeholder image on a model container
    that names none (the apiserver requires one), and, at creation, `replicas: min-replicas` when the
    manifest leaves replicas to the scaler, so that a scale-to-zero model does not start once for nothing."""
    out: dict[str, Any] = json_copy(dict(deployment))
    if creating and not replicas_set_by_user(out) and isinstance(out.get("spec"), dict):
        errors = Collector()
        scale = parse_scale(_str_map(_mapping(out.get("metadata")).get("annotations")), errors)
        if not errors.problems:  # an invalid Deployment is refused by validation: leave it as it is
            out["spec"]["replicas"] = scale.min_replicas
    template = _mapping(_mapping(out.get("spec")).get("template"))
    containers = _mapping(template.get("spec")).get("containers")
    annotations = _str_map(_mapping(template.get("metadata")).get("annotations"))
    named = annotations.get(CONTAINER_KEY)
    rendered = PREFIX + "model" in annotations  # in keep mode the user's image runs: none is filled in
    items = [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) and rendered else []
    for container in items:  # the model container names no image when the runtime gives it one
        if not container.get("image") and (container.get("name") in (named, MODEL_CONTAINER) or len(items) == 1):
            container["image"] = PLACEHOLDER_IMAGE
    return out


def render_for_pod(
    pod: Mapping[str, Any],
    runtimes: Sequence[InferenceRuntime],
    settings: RenderSettings,
    has_room: Callable[[InferenceRuntime, int], bool] | None = None,
) -> dict[str, Any]:
    """Render a pod as the webhook does at CREATE (ContractError when it cannot). The webhook is called
    once per CREATE (reinvocationPolicy Never), so Hearth's pod annotations that arrive with the pod were
    not written by Hearth: the stamp and the cache entry it loads are dropped and the pod rendered as any
    other (a forged stamp used to skip rendering and keep the pod's own image; a forged cache entry kept a
    model from eviction forever). `has_room(runtime, accelerators)`: the vendor by capacity
    (policies.selection)."""
    meta = _mapping(pod.get("metadata"))
    annotations = _str_map(meta.get("annotations"))
    if RENDERED in annotations or CACHED_MODEL in annotations:
        annotations.pop(RENDERED, None)
        annotations.pop(CACHED_MODEL, None)
        pod = {**pod, "metadata": {**meta, "annotations": annotations}}
    errors = Collector()
    spec = parse_pod(annotations, errors, where=POD_WHERE)
    errors.raise_if_any()
    if spec is None:
        raise RuntimeError("pod annotations unparsed without a recorded problem")
    served = spec.served_name or deployment_name_of(pod)
    if served is None:
        raise ContractError(
            [
                Problem(
                    f'{POD_WHERE}["{PREFIX}served-name"]',
                    None,
                    "is missing; a pod that no Deployment owns needs an explicit served model name",
                    f"set {PREFIX}served-name, or create the pod through a Deployment",
                )
            ]
        )
    room = None if has_room is None else (lambda runtime: has_room(runtime, spec.accelerators))
    runtime = None if spec.model is None else select_runtime(spec, runtimes, where=POD_WHERE, has_room=room)
    caches = _cache_paths(runtimes)
    return render_pod(dict(pod), runtime, spec, served, settings, accelerator_resources(runtimes), caches)


def _cache_paths(runtimes: Sequence[InferenceRuntime]) -> list[str]:
    """The node caches' host paths of the runtimes, which no template may mount by a host path of its own."""
    return sorted({r.spec.cache.host_path for r in runtimes if r.spec.cache is not None})


def deployment_name_of(pod: Mapping[str, Any]) -> str | None:
    """A ReplicaSet of a Deployment is named `<deployment>-<pod-template-hash>`."""
    meta = _mapping(pod.get("metadata"))
    template_hash = _str_map(meta.get("labels")).get("pod-template-hash")
    for owner in meta.get("ownerReferences") or []:
        if not isinstance(owner, Mapping) or owner.get("kind") != "ReplicaSet":
            continue
        name = str(owner.get("name", ""))
        if template_hash and name.endswith("-" + template_hash):
            return name[: -len(template_hash) - 1]
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}
