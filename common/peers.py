"""The pods of another Hearth component, as base URLs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from common.informer import Informer, InformerMetrics, resource_path
from common.kube import own_namespace
from common.kubeapi import KubeAPI


class Peers:
    """The base URLs of another Hearth component: the fixed ones, plus, with a selector, its pods (by label,
    in one namespace, default this pod's), watched by `run()`.

    Hearth's components find each other through the Kubernetes API rather than a Service: the scaler must
    read every front door (demand is their sum), and a front door must reach the leading scaler, which a
    Service would hide behind one random replica. It needs no cluster DNS either.
    """

    def __init__(
        self,
        fixed: Iterable[str] = (),
        api: KubeAPI | None = None,
        selector: str | None = None,
        namespace: str | None = None,
        port: int = 0,
        metrics: InformerMetrics | None = None,
    ) -> None:
        self.fixed = list(fixed)
        self.port = port
        self.selected = bool(selector)
        self._pods: Mapping[str, Mapping[str, Any]] = {}
        self.informer: Informer | None = None
        if selector and api is not None:
            path = resource_path("v1", "pods", namespace or own_namespace())
            self.informer = Informer(api, path, self._set, selector=selector, metrics=metrics, resource="peers")

    def _set(self, pods: Mapping[str, Mapping[str, Any]]) -> None:
        self._pods = pods

    async def run(self) -> None:
        if self.informer is not None:
            await self.informer.run()

    def urls(self) -> list[str]:
        return [*self.fixed, *peer_urls(self._pods.values(), self.port)]


def peer_urls(pods: Iterable[Mapping[str, Any]], port: int) -> list[str]:
    """Base URLs of the running pods with an address that are not being deleted, sorted (a stable order)."""
    found = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            continue
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        found.append(f"http://{status['podIP']}:{port}")
    return sorted(found)
