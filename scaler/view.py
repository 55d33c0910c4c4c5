"""The scaler's cluster view: opted-in Deployments and their pods, from two informers on the scaler's loop.

A pod whose `hearth.dev/rendered` stamp is forged or broken is left out (as if it did not exist) and
handed to `on_malformed`, which the scaler turns into a Warning Event on the pod's Deployment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from common.informer import Informer, InformerMetrics, resource_path
from common.kubeapi import KubeAPI
from policies import ENABLED_LABEL, model_key_of_pod, stamp_of

Obj = dict[str, Any]


class ClusterView:
    def __init__(self, api: KubeAPI, metrics: InformerMetrics | None = None) -> None:
        self.deployments: Mapping[str, Obj] = {}
        self.pods: Mapping[str, Obj] = {}
        self.on_malformed: Callable[[Obj, str], None] | None = None
        selector = f"{ENABLED_LABEL}=true"
        self.informers = [
            Informer(
                api,
                resource_path("apps/v1", "deployments"),
                self._set_deployments,
                selector=selector,
                metrics=metrics,
            ),
            Informer(
                api,
                resource_path("v1", "pods"),
                self._set_pods,
                selector=selector,
                check=stamp_of,
                on_malformed=self._malformed,
                metrics=metrics,
            ),
        ]

    def _set_deployments(self, objects: Mapping[str, Obj]) -> None:
        self.deployments = objects

    def _set_pods(self, objects: Mapping[str, Obj]) -> None:
        self.pods = objects

    def _malformed(self, pod: Obj, problem: str) -> None:
        if self.on_malformed is not None:
            self.on_malformed(pod, problem)

    @property
    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self.informers)

    async def run(self) -> None:
        await asyncio.gather(*(informer.run() for informer in self.informers))

    def deployment_of(self, pod: Mapping[str, Any]) -> Obj | None:
        key = model_key_of_pod(pod)
        return self.deployments.get(key) if key else None

    def pods_by_model(self) -> dict[str, list[Obj]]:
        """Each watched Deployment's pods (one pass over the pods)."""
        grouped: dict[str, list[Obj]] = {key: [] for key in self.deployments}
        for pod in self.pods.values():
            key = model_key_of_pod(pod)
            if key in grouped:
                grouped[key].append(pod)
        return grouped
