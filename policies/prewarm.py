"""Prewarm (`hearth.dev/prewarm`): fetch a model into the node cache of the nodes that could run it, before
anyone asks for it. Pure: which nodes, and the Job that fetches onto one of them; the scaler does the I/O.

The nodes are those the Deployment's runtime (the one the webhook would choose) selects: its nodeSelector
matches, its tolerations cover the node's NoSchedule and NoExecute taints, the node is Ready, schedulable
and has the runtime's accelerator. Nodes that already hold the model count first, so `hearth.dev/prewarm:
"2"` fetches onto at most two nodes in all, not two more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.adoption import model_container
from policies.annotations import TEMPLATE_WHERE, PodSpec
from policies.modelcache import (
    CACHED_MODEL,
    LABEL_VALUE,
    cache_key,
    cache_volume,
    endpoint_of,
    fetch_container,
    holds,
    node_label,
)
from policies.modelsource import ModelSource
from policies.runtime import InferenceRuntime, Toleration

PREWARM_FOR = "hearth.dev/prewarm-for"  # label of the Jobs and their pods: the Deployment's name
PREWARM_NODE = "cache.hearth.dev/node"  # annotation of the Jobs: the node they fetch onto
BACKOFF_LIMIT = 4  # the Job retries a failed fetch 4 times (10 s, 20 s, 40 s, 80 s apart)
DEADLINE_SECONDS = 4 * 3600
KEEP_FINISHED_SECONDS = 3600  # a failed Job stays this long (its Events and logs), then is tried anew


@dataclass(frozen=True)
class Plan:
    key: str  # the cache entry
    runtime: str
    candidates: tuple[str, ...]  # the nodes that could run the model
    warm: tuple[str, ...]  # those that hold it
    targets: tuple[str, ...]  # those it should be on (warm ones first)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(n for n in self.targets if n not in self.warm)

    def summary(self) -> str:
        held = sum(1 for n in self.targets if n in self.warm)
        return f"{held}/{len(self.targets)}"


def _tolerates(tolerations: Sequence[Toleration], taint: Mapping[str, Any]) -> bool:
    for toleration in tolerations:
        if toleration.effect and toleration.effect != taint.get("effect"):
            continue
        if toleration.operator == "Exists":
            if toleration.key in (None, "", taint.get("key")):
                return True
        elif toleration.key == taint.get("key") and (toleration.value or "") == (taint.get("value") or ""):
            return True
    return False


def can_run(runtime: InferenceRuntime, node: Mapping[str, Any]) -> bool:
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    labels = meta.get("labels") or {}
    accelerator = runtime.spec.accelerator
    if any(labels.get(k) != v for k, v in accelerator.node_selector.items()) or spec.get("unschedulable"):
        return False
    hard = [t for t in spec.get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
    if not all(_tolerates(accelerator.tolerations, taint) for taint in hard):
        return False
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    have = str((status.get("allocatable") or {}).get(accelerator.resource, "0"))
    return ready and have.isdigit() and int(have) > 0


def plan(key: str, runtime: InferenceRuntime, nodes: Iterable[Mapping[str, Any]], wanted: int) -> Plan:
    """Which nodes should hold `key`: `wanted` of those `runtime` can run on (warm ones first, then by name)."""
    label = node_label(key)
    candidates, warm = [], []
    for node in nodes:
        if not can_run(runtime, node):
            continue
        name = str((node.get("metadata") or {}).get("name"))
        candidates.append(name)
        if ((node.get("metadata") or {}).get("labels") or {}).get(label) == LABEL_VALUE:
            warm.append(name)
    ordered = sorted(candidates, key=lambda n: (n not in warm, n))
    return Plan(key, runtime.name, tuple(sorted(candidates)), tuple(sorted(warm)), tuple(ordered[:wanted]))


def job_name(deployment: str, node: str) -> str:
    """At most 63 characters (the Job's name becomes a label value on its pods), unique per node."""
    digest = hashlib.sha256(node.encode()).hexdigest()[:10]
    return f"hearth-prewarm-{deployment[:36].rstrip('-.')}-{digest}"


@dataclass(frozen=True)
class Fetch:
    """What a prewarm fetches: the cache entry, from which hub, with the model container's settings."""

    key: str
    endpoint: str
    source: ModelSource
    model: Mapping[str, Any]  # the template's model container


def prewarm_fetch(deployment: Mapping[str, Any], runtime: InferenceRuntime, spec: PodSpec) -> Fetch | None:
    """The entry the Deployment's pods load from the node cache (bound to its hub endpoint, as the webhook
    renders it); None for a model the cache does not hold or a runtime without a cache. ContractError for an
    endpoint that is not a plain URL value."""
    source = spec.model
    if source is None or runtime.spec.cache is None or not holds(source):
        return None
    template = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = template.get("containers") or []
    name = model_container(containers, spec.container, {runtime.spec.accelerator.resource}, TEMPLATE_WHERE)
    model = next(c for c in containers if c.get("name") == name)
    env = [{"name": e.name, "value": e.value} for e in runtime.spec.container.env] + list(model.get("env") or [])
    endpoint = endpoint_of(env, f"{TEMPLATE_WHERE}.containers[{name}]", source.kind)
    key = cache_key(source, endpoint)
    return None if key is None else Fetch(key, endpoint, source, {**model, "env": env})


def prewarm_job(
    deployment: Mapping[str, Any], runtime: InferenceRuntime, spec: PodSpec, node: str, image: str
) -> dict[str, Any] | None:
    """The Job that fetches the Deployment's model onto `node` with the model container's hub token (the
    same fetcher as the pods' init container); None when prewarm_fetch is None. Its pod carries no
    cache.hearth.dev/model annotation: a fetch holds the model's lock while it runs, and only pods the
    webhook rendered may say which model they load."""
    fetch = prewarm_fetch(deployment, runtime, spec)
    cache = runtime.spec.cache
    if fetch is None or cache is None:
        return None
    meta = deployment.get("metadata") or {}
    template = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    env, env_from = list(fetch.model.get("env") or []), list(fetch.model.get("envFrom") or [])
    container = fetch_container(env, env_from, fetch.source, fetch.endpoint, image, cache.max_age_seconds)
    deployment_name = str(meta.get("name"))
    labels = {
        "app.kubernetes.io/managed-by": "hearth",
        "app.kubernetes.io/component": "prewarm",
        PREWARM_FOR: deployment_name,
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                    ]
                }
            }
        },
        "containers": [container],
        "volumes": [cache_volume(cache.host_path, cache.volume)],
    }
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in runtime.spec.accelerator.tolerations]
    if tolerations:
        pod_spec["tolerations"] = tolerations
    for field in ("serviceAccountName", "imagePullSecrets", "priorityClassName"):
        if template.get(field):
            pod_spec[field] = template[field]
    owner = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment_name,
        "uid": meta.get("uid"),
        "blockOwnerDeletion": False,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(deployment_name, node),
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": {PREWARM_NODE: node, CACHED_MODEL: fetch.key},
            "ownerReferences": [owner],
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": KEEP_FINISHED_SECONDS,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def job_state(job: Mapping[str, Any]) -> str:
    """fetching | done | failed, from a Job's conditions."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "done"
        if condition.get("type") == "Failed":
            return "failed"
    return "fetching"
