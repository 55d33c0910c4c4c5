"""The accelerator capacity view a component keeps: two informers (every Node, every Pod, each slimmed to
what policies.capacities reads), on the component's loop. Built from memory after each change: no apiserver
call per admission, per tick or per request."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from common.informer import Informer, InformerMetrics, resource_path
from common.kubeapi import KubeAPI
from policies import Capacity, capacity, slim_node, slim_pod

Obj = dict[str, Any]


class AcceleratorView:
    def __init__(self, api: KubeAPI, metrics: InformerMetrics | None = None) -> None:
        self.nodes: Mapping[str, Obj] = {}
        self.pods: Mapping[str, Obj] = {}
        self._built: Capacity | None = None  # built at the first use after a change
        self.informers = [
            Informer(api, resource_path("v1", "nodes"), self._set_nodes, metrics=metrics, transform=slim_node),
            Informer(
                api,
                resource_path("v1", "pods"),
                self._set_pods,
                metrics=metrics,
                resource="pods/capacity",  # beside the view of model pods, a metric label of its own
                transform=slim_pod,
            ),
        ]

    def _set_nodes(self, objects: Mapping[str, Obj]) -> None:
        self.nodes, self._built = objects, None

    def _set_pods(self, objects: Mapping[str, Obj]) -> None:
        self.pods, self._built = objects, None

    @property
    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self.informers)

    def capacity(self) -> Capacity:
        """The view now (built again only after a node or pod changed; callers must not modify it)."""
        if self._built is None:
            self._built = capacity(self.nodes.values(), self.pods.values())
        return self._built

    def capacity_if_synced(self) -> Capacity | None:
        return self.capacity() if self.synced else None

    async def run(self) -> None:
        await asyncio.gather(*(informer.run() for informer in self.informers))
