"""The highest `hearth.dev/priority` a namespace's models get, set by a cluster admin: the namespace label
`hearth.dev/max-priority` ("0".."1000"), else the scaler's `--default-max-priority`.

A Deployment's priority is its tenant's word; which tenant may outrank which is the admin's (as Kubernetes
keeps PriorityClasses cluster-scoped). Tenants bound to `admin` or `edit` in a namespace cannot label the
namespace itself. Only labelled namespaces are watched (a label selector), so the watch is as small as
the number of namespaces an admin set a ceiling on."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from common.informer import Informer, InformerMetrics, resource_path
from common.kubeapi import KubeAPI

log = logging.getLogger("hearth.scaler")
LABEL = "hearth.dev/max-priority"


def ceilings_of(namespaces: Mapping[str, Mapping[str, object]]) -> dict[str, int]:
    """Each labelled namespace's ceiling; a value that is not a whole number from 0 to 1000 counts as 0 (a
    typo of the admin's never lifts a tenant above the others)."""
    found: dict[str, int] = {}
    for obj in namespaces.values():
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            continue
        raw = str((meta.get("labels") or {}).get(LABEL, ""))
        name = str(meta.get("name", ""))
        found[name] = int(raw) if raw.isdigit() and int(raw) <= 1000 else 0
    return found


class PriorityCeilings:
    def __init__(self, api: KubeAPI | None, default: int = 1000, metrics: InformerMetrics | None = None) -> None:
        self.default = default
        self.ceilings: dict[str, int] = {}
        self.informer = (
            None
            if api is None
            else Informer(
                api,
                resource_path("v1", "namespaces"),
                self._set,
                selector=LABEL,
                metrics=metrics,
                resource="namespaces",
            )
        )

    def _set(self, namespaces: Mapping[str, Mapping[str, object]]) -> None:
        before, self.ceilings = self.ceilings, ceilings_of(namespaces)
        if self.ceilings != before:
            log.info("priority ceilings: %s (others: %d)", self.ceilings, self.default)

    async def run(self) -> None:
        if self.informer is not None:
            await self.informer.run()

    def cap(self, namespace: str, priority: int) -> int:
        """The priority a model of `namespace` acts with: its own, at most its namespace's ceiling."""
        return min(priority, self.ceilings.get(namespace, self.default))
