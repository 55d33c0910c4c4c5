"""`hearth status`: NAME PHASE RUNTIME REPLICAS DEMAND PREWARMED AGE of Hearth Deployments, from the live
cluster. PREWARMED is the nodes holding the model in their cache out of those `hearth.dev/prewarm` asks for."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from policies import ENABLED_LABEL, PHASE_LABEL, status_of

COLUMNS = ("NAME", "PHASE", "RUNTIME", "REPLICAS", "DEMAND", "PREWARMED", "AGE")


def age(created: str | None, now: dt.datetime) -> str:
    if not created:
        return "?"
    seconds = int((now - dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def row(deployment: Mapping[str, Any], now: dt.datetime, *, with_namespace: bool) -> list[str]:
    meta = deployment.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = status_of(deployment)
    template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    pinned = (template.get("annotations") or {}).get("hearth.dev/runtime")
    vendors = (template.get("annotations") or {}).get("hearth.dev/vendors")
    runtime = status.get("runtime") or pinned or (f"({vendors})" if vendors else "-")
    desired = int((deployment.get("spec") or {}).get("replicas") or 0)
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    name = f"{meta.get('namespace')}/{meta.get('name')}" if with_namespace else str(meta.get("name"))
    demand = status.get("demand")
    return [
        name,
        labels.get(PHASE_LABEL, "-"),
        str(runtime),
        f"{ready}/{desired}",
        "-" if demand is None else str(demand),
        status.get("prewarmed") or "-",
        age(meta.get("creationTimestamp"), now),
    ]


def table(deployments: list[Mapping[str, Any]], *, with_namespace: bool) -> str:
    now = dt.datetime.now(dt.UTC)
    rows = [list(COLUMNS)] + [row(d, now, with_namespace=with_namespace) for d in deployments]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in rows
    )


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
