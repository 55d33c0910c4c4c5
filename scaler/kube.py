"""The scaler's calls to Kubernetes, behind one small class (tests of the loop pass a fake)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

log = logging.getLogger("hearth.scaler")
FIELD_MANAGER = "hearth-scaler"


class KubeWriter:
    def __init__(self, api_client: Any, identity: str) -> None:
        from kubernetes import client

        self.apps: Any = client.AppsV1Api(api_client)
        self.core: Any = client.CoreV1Api(api_client)
        self.identity = identity

    async def scale(self, namespace: str, name: str, replicas: int, attempts: int = 3) -> int | None:
        """Write replicas through the scale subresource with optimistic concurrency, retrying conflicts.
        Returns the replicas it replaced (None when it gave up)."""
        from kubernetes.client.exceptions import ApiException

        for _ in range(attempts):
            scale = await asyncio.to_thread(self.apps.read_namespaced_deployment_scale, name, namespace)
            before = int(scale.spec.replicas or 0)
            if before == replicas:
                return before
            body = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": scale.metadata.resource_version},
                "spec": {"replicas": replicas},
            }
            try:
                await asyncio.to_thread(
                    self.apps.replace_namespaced_deployment_scale, name, namespace, body, field_manager=FIELD_MANAGER
                )
            except ApiException as exc:
                if exc.status == 409:
                    continue  # someone wrote in between: read again
                raise
            return before
        log.warning("gave up scaling %s/%s after %d conflicts", namespace, name, attempts)
        return None

    async def mark(self, namespace: str, name: str, labels: dict[str, str], annotations: dict[str, str]) -> None:
        body = {"metadata": {"labels": labels, "annotations": annotations}}
        await asyncio.to_thread(
            self.apps.patch_namespaced_deployment, name, namespace, body, field_manager=FIELD_MANAGER
        )

    async def event(self, deployment: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        meta = deployment["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        micro = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": self.identity,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": micro,
            "action": "Scale",
            "count": 1,
        }
        await asyncio.to_thread(self.core.create_namespaced_event, meta["namespace"], body)

    async def deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        """Busy pods cost more to delete, so a scale-down removes idle pods first."""
        body = {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": str(cost)}}}
        await asyncio.to_thread(self.core.patch_namespaced_pod, pod, namespace, body, field_manager=FIELD_MANAGER)
