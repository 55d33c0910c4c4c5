"""The record of who holds a contested plain model name (policies.names), as the front doors and the
webhook read it: an informer on its ConfigMap in Hearth's namespace. Until it has synced (or when the
record is missing or broken) the record is empty, and a contested name goes to its oldest claimant."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from common.informer import Informer, InformerMetrics, resource_path
from common.kubeapi import KubeAPI
from policies import NAMES_CONFIGMAP, NAMES_LABEL, names_of_configmap

log = logging.getLogger("hearth.names")


class NamesWatch:
    def __init__(
        self,
        api: KubeAPI,
        namespace: str,
        metrics: InformerMetrics | None = None,
        on_change: Callable[[Mapping[str, str]], None] | None = None,
    ) -> None:
        self.recorded: Mapping[str, str] = {}
        self.on_change = on_change
        path = resource_path("v1", "configmaps", namespace)
        self.informer = Informer(
            api,
            path,
            self._changed,
            selector=f"{NAMES_LABEL}=true",
            check=names_of_configmap,
            metrics=metrics,
            resource="configmaps",
        )

    def _changed(self, objects: Mapping[str, Mapping[str, Any]]) -> None:
        found = [o for o in objects.values() if (o.get("metadata") or {}).get("name") == NAMES_CONFIGMAP]
        self.recorded = names_of_configmap(found[0]) if found else {}
        log.info("model names record: %d names", len(self.recorded))
        if self.on_change is not None:
            self.on_change(self.recorded)

    async def run(self) -> None:
        await self.informer.run()
