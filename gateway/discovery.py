"""Where the front door learns its models and their ready pods.

- `StaticUpstreams`: `--upstream NAME=URL` outside a cluster; a backend is ready while its `/health`
  answers 200 (503 means loading; 500 means the engine is dead: a start failure, as vLLM reports it).
- `KubeDiscovery`: watches opted-in Deployments and their pods; a pod is a backend while it is Ready and
  not terminating, reached at its IP through the sidecar's port (from the webhook's rendered stamp).
  Watching pods (not EndpointSlices) gives the stamp and the Deployment in one object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from common.informer import Informer, InformerMetrics, resource_path
from common.kubeapi import KubeAPI
from gateway.table import ModelTable
from policies import (
    ENABLED_LABEL,
    Collector,
    ScaleSpec,
    backend_of,
    eta_for,
    model_key_of_pod,
    progress_of,
    published_failure,
    scale_of,
    served_names_of,
    stamp_of,
    status_of,
)

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
        held_interval: float | None = None,
    ) -> None:
        self.table = table
        self.upstreams = {name: list(urls) for name, urls in upstreams.items()}
        self.client = client
        self.interval = interval
        self.held_interval = min(interval, held_interval if held_interval is not None else interval)
        for name in self.upstreams:
            table.upsert(f"local/{name}", name, defaults)

    async def run(self) -> None:
        while True:
            await asyncio.gather(*(self._check(name, urls) for name, urls in self.upstreams.items()))
            await asyncio.sleep(self.next_check())

    def next_check(self) -> float:
        """Seconds to the next round of health checks: sooner while any request is held for a model that
        has no ready backend, so that a start is noticed within `held_interval`, not a whole interval."""
        waiting = any(s.held and not s.backends for s in self.table.models.values())
        return self.held_interval if waiting else self.interval

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
        if not ready:  # what a held client is told (hearth.dev/cold-start-progress)
            loading = 503 in statuses
            words = "loading the model (its /health answers 503)" if loading else "waiting for its server to answer"
            self.table.set_start(key, None, f"{name}: {words}")
        self.table.set_failure(key, f"its /health answered {dead[0]}" if failed else None)


class KubeDiscovery:
    """Opted-in Deployments and their pods, from one informer per resource and namespace (or one each for
    all namespaces); every change recomputes the table. A pod with a forged or broken stamp is skipped by
    its informer (logged and counted) and never stops the others."""

    def __init__(
        self,
        table: ModelTable,
        api: KubeAPI,
        namespaces: tuple[str, ...],
        on_removed: Callable[[str], None],
        metrics: InformerMetrics | None = None,
    ) -> None:
        self.table = table
        self.on_removed = on_removed
        self.deployments: dict[str, Mapping[str, dict[str, Any]]] = {}
        self.pods: dict[str, Mapping[str, dict[str, Any]]] = {}
        self.informers: list[Informer] = []
        selector = f"{ENABLED_LABEL}=true"
        for scope in namespaces or (None,):
            for plural, group, store, check in (
                ("deployments", "apps/v1", self.deployments, None),
                ("pods", "v1", self.pods, stamp_of),
            ):

                def changed(
                    objects: Mapping[str, dict[str, Any]], scope: str = scope or "*", store: Any = store
                ) -> None:
                    store[scope] = objects
                    if all(informer.synced.is_set() for informer in self.informers):
                        self.apply()

                path = resource_path(group, plural, scope)
                self.informers.append(
                    Informer(api, path, changed, selector=selector, check=check, metrics=metrics, resource=plural)
                )

    @property
    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self.informers)

    async def run(self) -> None:
        await asyncio.gather(*(informer.run() for informer in self.informers))

    def apply(self) -> None:
        """Recompute the table from the watched Deployments and pods (runs on the event loop)."""
        deployments = {k: v for objects in self.deployments.values() for k, v in objects.items()}
        pods = [p for objects in self.pods.values() for p in objects.values()]
        for key, deployment in deployments.items():
            errors = Collector()
            scale = scale_of(deployment, errors)
            if errors.problems:  # the validating webhook refuses these; tolerate what got in while it was down
                log.warning("deployment %s: %s", key, errors.problems[0])
            created = str((deployment.get("metadata") or {}).get("creationTimestamp") or "")
            self.table.upsert(key, served_names_of(deployment), scale, created)
            self.table.set_failure(key, published_failure(deployment))
        for key in [k for k in self.table.models if k not in deployments]:
            self.table.remove(key)
            self.on_removed(key)
        backends: dict[str, dict[str, str]] = {key: {} for key in deployments}
        pods_of: dict[str, list[dict[str, Any]]] = {key: [] for key in deployments}
        for pod in pods:
            found = backend_of(pod)
            if found is not None and found.model in backends:
                backends[found.model][found.url] = found.pod
            owner = model_key_of_pod(pod)
            if owner in pods_of:
                pods_of[owner].append(pod)
        for key, urls in backends.items():
            if set(urls) != set(self.table.models[key].backends):
                self.table.set_backends(key, urls)
            deployment = deployments[key]
            if urls:  # served: no start to tell of (the ETA stays for a queue-full Retry-After)
                self.table.set_start(key, eta_for(status_of(deployment), "ready"), "")
                continue
            desired = int((deployment.get("spec") or {}).get("replicas") or 0)
            progress = progress_of(self.table.models[key].name, desired, pods_of[key])
            eta = eta_for(status_of(deployment), progress.stage)  # a node that fetches: the cold prediction
            self.table.set_start(key, eta, progress.text)
