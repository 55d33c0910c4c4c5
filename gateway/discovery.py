"""Where the front door learns its models and their ready pods.

- `StaticUpstreams`: `--upstream NAME=URL` outside a cluster; a backend is ready while its `/health`
  answers 200 (503 means loading; 500 means the engine is dead: a start failure, as vLLM reports it).
- `KubeDiscovery`: watches opted-in Deployments and their pods; a pod is a backend while it is Ready and
  not terminating, reached at its IP through the sidecar's port (from the webhook's rendered stamp).
  EndpointSlices would reject the dev cluster's 127/8 pod addresses; watching pods works everywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from gateway.table import ModelTable
from hearth.kube import Informer
from policies import ENABLED_LABEL, RENDERED, Collector, ScaleSpec, deployment_name_of, parse_scale
from policies.annotations import PHASE_LABEL

log = logging.getLogger("hearth.discovery")


class StaticUpstreams:
    """Fixed backends by name; one name may list several URLs (several replicas of one model)."""

    def __init__(
        self,
        table: ModelTable,
        upstreams: Mapping[str, list[str]],
        defaults: ScaleSpec,
        client: httpx.AsyncClient,
        interval: float,
    ) -> None:
        self.table = table
        self.upstreams = {name: list(urls) for name, urls in upstreams.items()}
        self.client = client
        self.interval = interval
        for name in self.upstreams:
            table.upsert(f"local/{name}", name, defaults)

    async def run(self) -> None:
        while True:
            await asyncio.gather(*(self._check(name, urls) for name, urls in self.upstreams.items()))
            await asyncio.sleep(self.interval)

    async def _status(self, url: str) -> int:
        try:
            return (await self.client.get(f"{url}/health", timeout=2.0)).status_code
        except httpx.HTTPError:
            return 0

    async def _check(self, name: str, urls: list[str]) -> None:
        key = f"local/{name}"
        statuses = await asyncio.gather(*(self._status(url) for url in urls))
        ready = {
            url: f"{name}-{index}"
            for index, (url, status) in enumerate(zip(urls, statuses, strict=True))
            if status == 200
        }
        if set(ready) != set(self.table.models[key].backends):
            self.table.set_backends(key, ready)
            log.info("upstream %s: %d of %d ready", name, len(ready), len(urls))
        dead = [s for s in statuses if s >= 500 and s != 503]
        failed = not ready and len(dead) == len(urls)
        self.table.set_failure(key, f"its /health answered {dead[0]}" if failed else None)


def model_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def scale_of(deployment: Mapping[str, Any]) -> ScaleSpec:
    errors = Collector()
    spec = parse_scale((deployment.get("metadata") or {}).get("annotations") or {}, errors)
    if errors.problems:  # the validating webhook refuses these; tolerate what got in while it was down
        log.warning("deployment %s: %s", (deployment.get("metadata") or {}).get("name"), errors.problems[0])
    return spec


def served_name_of(deployment: Mapping[str, Any]) -> str:
    template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    served = (template.get("annotations") or {}).get("hearth.dev/served-name")
    return str(served or (deployment.get("metadata") or {}).get("name"))


def failure_of(deployment: Mapping[str, Any]) -> str | None:
    """A model that cannot start: the scaler's Degraded phase, or pods the ReplicaSet cannot create."""
    labels = (deployment.get("metadata") or {}).get("labels") or {}
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason"))
    if labels.get(PHASE_LABEL) == "Degraded":
        return "its Deployment is Degraded"
    return None


def backend_of(pod: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(model key, sidecar URL, pod name) of a Ready, non-terminating rendered pod, else None."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp") or not status.get("podIP"):
        return None
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
        return None
    try:
        stamp = json.loads((meta.get("annotations") or {}).get(RENDERED, ""))
    except ValueError:
        return None
    deployment = deployment_name_of(pod)
    if deployment is None:
        return None
    return (
        model_key(meta.get("namespace", ""), deployment),
        f"http://{status['podIP']}:{stamp['sidecarPort']}",
        meta["name"],
    )


class KubeDiscovery:
    def __init__(
        self,
        table: ModelTable,
        api_client: Any,
        namespaces: tuple[str, ...],
        loop: asyncio.AbstractEventLoop,
        on_removed: Callable[[str], None],
    ) -> None:
        self.table = table
        self.api_client = api_client
        self.namespaces = namespaces
        self.loop = loop
        self.on_removed = on_removed
        self.stop = threading.Event()
        self.deployments: dict[str, dict[str, dict[str, Any]]] = {}
        self.pods: dict[str, dict[str, dict[str, Any]]] = {}
        self.synced = threading.Event()

    def start(self) -> None:
        from kubernetes import client

        apps, core = client.AppsV1Api(self.api_client), client.CoreV1Api(self.api_client)
        selector = f"{ENABLED_LABEL}=true"
        scopes: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        if self.namespaces:
            for ns in self.namespaces:
                scopes.append(
                    (
                        ns,
                        {"list_fn": apps.list_namespaced_deployment, "namespace": ns},
                        {"list_fn": core.list_namespaced_pod, "namespace": ns},
                    )
                )
        else:
            scopes.append(
                (
                    "*",
                    {"list_fn": apps.list_deployment_for_all_namespaces},
                    {"list_fn": core.list_pod_for_all_namespaces},
                )
            )
        for scope, deploy_args, pod_args in scopes:
            for kind, args, store in (("deployments", deploy_args, self.deployments), ("pods", pod_args, self.pods)):

                def changed(
                    objects: dict[str, dict[str, Any]], scope: str = scope, store: dict[str, Any] = store
                ) -> None:
                    store[scope] = objects
                    self.loop.call_soon_threadsafe(self.apply)

                informer = Informer(label_selector=selector, on_change=changed, stop=self.stop, **args)
                threading.Thread(target=informer.run, name=f"watch-{kind}-{scope}", daemon=True).start()

    def apply(self) -> None:
        """Recompute the table from the watched Deployments and pods (runs on the event loop)."""
        deployments = {k: v for objects in self.deployments.values() for k, v in objects.items()}
        pods = [p for objects in self.pods.values() for p in objects.values()]
        for key, deployment in deployments.items():
            self.table.upsert(key, served_name_of(deployment), scale_of(deployment))
            self.table.set_failure(key, failure_of(deployment))
        for key in [k for k in self.table.models if k not in deployments]:
            self.table.remove(key)
            self.on_removed(key)
        backends: dict[str, dict[str, str]] = {key: {} for key in deployments}
        for pod in pods:
            found = backend_of(pod)
            if found is not None and found[0] in backends:
                backends[found[0]][found[1]] = found[2]
        for key, urls in backends.items():
            if set(urls) != set(self.table.models[key].backends):
                self.table.set_backends(key, urls)
        self.synced.set()
