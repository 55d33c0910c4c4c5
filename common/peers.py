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
        *,
        leaving_too: bool = False,
    ) -> None:
        """`leaving_too`: pods being deleted count while they still run (a front door that drains still
        holds and relays requests its scaler must count); `leaving()` names them."""
        self.fixed = list(fixed)
        self.port = port
        self.leaving_too = leaving_too
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
        return [*self.fixed, *peer_urls(self._pods.values(), self.port, leaving=self.leaving_too)]

    def leaving(self) -> set[str]:
        """The URLs of pods being deleted (in `urls()` only with `leaving_too`)."""
        deleted = [p for p in self._pods.values() if (p.get("metadata") or {}).get("deletionTimestamp")]
        return set(peer_urls(deleted, self.port, leaving=True))


def peer_urls(pods: Iterable[Mapping[str, Any]], port: int, *, leaving: bool = False) -> list[str]:
    """Base URLs of the running pods with an address, sorted (a stable order); those being deleted only
    with `leaving`."""
    found = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            continue
        if (pod.get("metadata") or {}).get("deletionTimestamp") and not leaving:
            continue
        found.append(f"http://{status['podIP']}:{port}")
    return sorted(found)
