"""`hearth status`: NAME KIND PHASE RUNTIME REPLICAS DEMAND PREWARMED LAST START ETA AGE of Hearth Deployments
and LLMServices, from the live cluster. PREWARMED is the nodes holding the model in their cache out of those
`hearth.dev/prewarm` asks for; LAST START the last start from zero, ETA the scaler's prediction of the next.
`hearth status --capacity`: per node and accelerator, what is free, busy, idle or held by other pods, and
which models hold it (policies.capacities, from one list of nodes and pods)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from policies import (
    COLD_START,
    ENABLED_LABEL,
    GROUP,
    LLMSERVICE_KIND,
    LLMSERVICE_PLURAL,
    PHASE_LABEL,
    Capacity,
    api_time,
    model_key_of,
    parse_history,
    status_of,
)

COLUMNS = ("NAME", "KIND", "PHASE", "RUNTIME", "REPLICAS", "DEMAND", "PREWARMED", "LAST START", "ETA", "AGE")


def age(created: str | None, now: dt.datetime) -> str:
    at = api_time(created)
    if at is None:
        return "?"
    seconds = int((now - at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def row(deployment: Mapping[str, Any], now: dt.datetime, *, with_namespace: bool, predicted: str = "") -> list[str]:
    """`predicted`: the runtime an LLMService's status names (at zero: the one a pod would get)."""
    meta = deployment.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = status_of(deployment)
    template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    pinned = (template.get("annotations") or {}).get("hearth.dev/runtime")
    vendors = (template.get("annotations") or {}).get("hearth.dev/vendors")
    runtime = status.get("runtime") or predicted or pinned or (f"({vendors})" if vendors else "-")
    desired = int((deployment.get("spec") or {}).get("replicas") or 0)
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    name = f"{meta.get('namespace')}/{meta.get('name')}" if with_namespace else str(meta.get("name"))
    demand = status.get("demand")
    owners = [r.get("kind") for r in meta.get("ownerReferences") or [] if r.get("controller")]
    return [
        name,
        LLMSERVICE_KIND if LLMSERVICE_KIND in owners else "Deployment",
        labels.get(PHASE_LABEL, "-"),
        str(runtime),
        f"{ready}/{desired}",
        "-" if demand is None else str(demand),
        status.get("prewarmed") or "-",
        last_start(status.get("starts")),
        f"{status['eta']}s" if status.get("eta") else "-",
        age(meta.get("creationTimestamp"), now),
    ]


def last_start(starts: str | None) -> str:
    """The last start from zero: its seconds and whether the node's cache was warm or had to fetch."""
    history = parse_history(starts)
    if not history:
        return "-"
    kind, seconds = history[-1]
    return f"{seconds:.0f}s ({'fetched' if kind == COLD_START else 'warm'})"


def service_row(service: Mapping[str, Any], now: dt.datetime, *, with_namespace: bool) -> list[str]:
    """An LLMService that has no Deployment to show (Pending, Conflict, Invalid): its own status says why."""
    meta = service.get("metadata") or {}
    status = service.get("status") or {}
    name = f"{meta.get('namespace')}/{meta.get('name')}" if with_namespace else str(meta.get("name"))
    phase = str(status.get("phase") or "Pending")
    if status.get("message"):
        phase += f": {status['message']}"
    return [
        name,
        LLMSERVICE_KIND,
        phase,
        status.get("runtime") or "-",
        "0/0",
        *["-"] * 4,  # DEMAND PREWARMED LAST START ETA: nothing runs
        age(meta.get("creationTimestamp"), now),
    ]


def aligned(rows: list[list[str]]) -> str:
    """Rows as columns padded to their widest cell, as kubectl prints them."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def table(
    deployments: list[Mapping[str, Any]], *, with_namespace: bool, services: list[Mapping[str, Any]] | None = None
) -> str:
    """One row per Hearth Deployment (KIND LLMService when one compiled it), and one per LLMService that has
    no Deployment yet or cannot have one (a name conflict, an invalid spec)."""
    now = dt.datetime.now(dt.UTC)
    shown = {model_key_of(d) for d in deployments}
    lonely = [s for s in services or [] if model_key_of(s) not in shown]
    runtimes = {model_key_of(s): str((s.get("status") or {}).get("runtime") or "") for s in services or []}
    rows = [
        row(d, now, with_namespace=with_namespace, predicted=runtimes.get(model_key_of(d), "")) for d in deployments
    ]
    rows += [service_row(s, now, with_namespace=with_namespace) for s in lonely]
    return aligned([list(COLUMNS), *sorted(rows)])


def fetch(kubeconfig: str | None, namespace: str | None) -> list[Mapping[str, Any]]:
    from kubernetes import client, config

    apps: Any = client.AppsV1Api(config.new_client_from_config(kubeconfig))
    selector = f"{ENABLED_LABEL}=true"
    if namespace is None:
        raw = apps.list_deployment_for_all_namespaces(
            label_selector=selector, _preload_content=False, _request_timeout=30
        )
    else:
        raw = apps.list_namespaced_deployment(
            namespace, label_selector=selector, _preload_content=False, _request_timeout=30
        )
    items: list[Mapping[str, Any]] = json.loads(raw.data).get("items", [])
    return sorted(items, key=lambda d: (d["metadata"]["namespace"], d["metadata"]["name"]))


def fetch_services(kubeconfig: str | None, namespace: str | None) -> list[Mapping[str, Any]]:
    """Every LLMService (none when the CRD is not installed)."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    custom: Any = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
    where = {"namespace": namespace} if namespace else {}
    call = custom.list_namespaced_custom_object if namespace else custom.list_cluster_custom_object
    try:
        found = call(group=GROUP, version="v1alpha1", plural=LLMSERVICE_PLURAL, **where, _request_timeout=30)
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    items: list[Mapping[str, Any]] = found.get("items", [])
    return items


CAPACITY_COLUMNS = ("NODE", "RESOURCE", "ALLOCATABLE", "FREE", "BUSY", "IDLE", "OTHER", "HELD BY")


def capacity_table(view: Capacity, deployments: list[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """One row per node and accelerator. A model's replicas are idle when the scaler last saw no demand
    for it (they may be retired to make room; since its last use, when known), busy otherwise; OTHER is
    pods Hearth does not scale."""
    now = now or dt.datetime.now(dt.UTC)
    demand = {model_key_of(d): status_of(d).get("demand") for d in deployments}
    used = {model_key_of(d): status_of(d).get("used") for d in deployments}
    rows = [list(CAPACITY_COLUMNS)]
    for node, resource in view.pools():
        counts = {"busy": 0, "idle": 0, "other": 0}
        held: dict[str, int] = {}
        for holding in view.holders.get((node, resource), []):
            count = holding.needs.get(resource, 0)
            if holding.model is None or holding.model not in demand:
                counts["other"] += count
                continue
            state = "idle" if str(demand[holding.model]) == "0" else "busy"
            counts[state] += count
            since = f" {age(used[holding.model], now)}" if state == "idle" and used[holding.model] else ""
            label = f"{holding.model} ({state}{since}{', going' if holding.terminating else ''})"
            held[label] = held.get(label, 0) + count
        allocatable = view.nodes[node].allocatable.get(resource, 0)
        who = ", ".join(f"{n}x {label}" if n > 1 else label for label, n in sorted(held.items())) or "-"
        free = str(view.free(node, resource))
        rows.append([node, resource, str(allocatable), free, *(str(counts[k]) for k in ("busy", "idle", "other")), who])
    return aligned(rows)


def fetch_capacity(kubeconfig: str | None) -> tuple[Capacity, list[Mapping[str, Any]]]:
    """The accelerator view and every Hearth Deployment, from three lists."""
    from kubernetes import client, config

    from policies import capacity

    api_client = config.new_client_from_config(kubeconfig)
    core: Any = client.CoreV1Api(api_client)
    nodes = json.loads(core.list_node(_preload_content=False, _request_timeout=30).data).get("items", [])
    pods = json.loads(core.list_pod_for_all_namespaces(_preload_content=False, _request_timeout=60).data)
    return capacity(nodes, pods.get("items", [])), list(fetch(kubeconfig, None))
