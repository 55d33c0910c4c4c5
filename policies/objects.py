"""What the front door and the scaler read off a Deployment or a pod, pure: the model's key and served name,
its scale spec, why it cannot start, and where a pod's sidecar answers.

A pod's stamp is parsed with `stamp_of`, which raises MalformedStamp on a forged or broken one: the
cluster view skips such a pod (and says so) before any of these functions sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.annotations import PHASE_LABEL, ScaleSpec, parse_scale
from policies.deployment import deployment_name_of
from policies.errors import Collector
from policies.modelcache import FETCH_CONTAINER
from policies.phases import DEGRADED, failure_of
from policies.stamp import stamp_of

CRASH_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"})


@dataclass(frozen=True)
class PodBackend:
    """A Ready, non-terminating rendered pod: the model it serves, its sidecar's URL, its name."""

    model: str
    url: str
    pod: str


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def model_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def key_namespace(key: str) -> str:
    """The namespace of a model key (model_key's first part)."""
    return key.partition("/")[0]


def model_key_of(obj: Mapping[str, Any]) -> str:
    meta = _mapping(obj.get("metadata"))
    return model_key(str(meta.get("namespace", "")), str(meta.get("name", "")))


def model_key_of_pod(pod: Mapping[str, Any]) -> str | None:
    """The model (`namespace/deployment`) a pod belongs to, or None when no Deployment owns it."""
    name = deployment_name_of(pod)
    return model_key(str(_mapping(pod.get("metadata")).get("namespace", "")), name) if name else None


def scale_of(deployment: Mapping[str, Any], errors: Collector | None = None) -> ScaleSpec:
    """The Deployment's scale spec; a value the validating webhook would refuse (it may have been down)
    falls back to its default, with the problem in `errors`."""
    annotations = _mapping(_mapping(deployment.get("metadata")).get("annotations"))
    return parse_scale({str(k): str(v) for k, v in annotations.items()}, errors or Collector())


def served_names_of(deployment: Mapping[str, Any]) -> tuple[str, ...]:
    """The names clients may ask for besides the Deployment's: `hearth.dev/served-name` of the pod template,
    comma-separated, the first being the one the server serves; else the Deployment's name alone."""
    template = _mapping(_mapping(_mapping(deployment.get("spec")).get("template")).get("metadata"))
    served = str(_mapping(template.get("annotations")).get("hearth.dev/served-name") or "")
    names = tuple(dict.fromkeys(n.strip() for n in served.split(",") if n.strip()))
    return names or (str(_mapping(deployment.get("metadata")).get("name")),)


def rollout_failure(deployment: Mapping[str, Any]) -> str | None:
    """Pods the ReplicaSet may not create (e.g. refused by the webhook), or a rollout past its deadline."""
    for condition in _mapping(deployment.get("status")).get("conditions") or []:
        if not isinstance(condition, Mapping):
            continue
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason"))
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return str(condition.get("message"))
    return None


def start_failure(deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the model cannot start, if it cannot: a rollout failure, or containers stuck failing."""
    failed = rollout_failure(deployment)
    if failed is not None:
        return failed
    for pod in pods:
        name = _mapping(pod.get("metadata")).get("name")
        fetch = _fetch_failure(pod)
        if fetch is not None:
            return f"pod {name}: the model could not be fetched: {fetch}"
        for status in _mapping(pod.get("status")).get("containerStatuses") or []:
            waiting = _mapping(_mapping(_mapping(status).get("state")).get("waiting"))
            if waiting.get("reason") in CRASH_REASONS:
                return f"pod {name}: {waiting.get('reason')}: {waiting.get('message', '')}".strip()
    return None


def _fetch_failure(pod: Mapping[str, Any]) -> str | None:
    """The node cache's fetcher's own words (its termination message) when it failed: it has tried the hub
    again itself before giving up, so one failure already says what is wrong (a gated or missing model)."""
    for status in _mapping(pod.get("status")).get("initContainerStatuses") or []:
        if _mapping(status).get("name") != FETCH_CONTAINER or _mapping(status).get("ready"):
            continue
        for where in ("state", "lastState"):
            ended = _mapping(_mapping(_mapping(status).get(where)).get("terminated"))
            if ended and ended.get("exitCode") not in (0, None):
                return str(ended.get("message") or ended.get("reason") or f"exit code {ended.get('exitCode')}").strip()
    return None


def published_failure(deployment: Mapping[str, Any]) -> str | None:
    """What the front door fails held requests with: a rollout failure, or the scaler's Degraded phase."""
    failed = rollout_failure(deployment)
    if failed is not None:
        return failed
    if _mapping(_mapping(deployment.get("metadata")).get("labels")).get(PHASE_LABEL) == DEGRADED:
        why = failure_of(deployment)  # the model's namespace's own pods' words, for its own callers
        return f"its Deployment is Degraded: {why[:400]}" if why else "its Deployment is Degraded"
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = _mapping(pod.get("status")).get("conditions") or []
    return any(_mapping(c).get("type") == "Ready" and _mapping(c).get("status") == "True" for c in conditions)


def sidecar_url(pod: Mapping[str, Any]) -> str | None:
    """Where the pod's sidecar answers: its IP and the stamp's sidecar port; None while the pod has no IP,
    is terminating or was not rendered. Raises MalformedStamp on a forged stamp."""
    meta, status = _mapping(pod.get("metadata")), _mapping(pod.get("status"))
    stamp = stamp_of(pod)
    if stamp is None or meta.get("deletionTimestamp") or not status.get("podIP"):
        return None
    return f"http://{status['podIP']}:{stamp.sidecar_port}"


def backend_of(pod: Mapping[str, Any]) -> PodBackend | None:
    """The pod as a backend of its model when it is Ready, not terminating and rendered, else None."""
    url = sidecar_url(pod)
    model = model_key_of_pod(pod)
    if url is None or model is None or not is_ready(pod):
        return None
    return PodBackend(model, url, str(_mapping(pod.get("metadata")).get("name", "")))
