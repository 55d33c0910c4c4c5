"""The scaler's writes to Kubernetes, behind one small class (tests of the loop pass a fake). Each call has
the client's timeout: a hung apiserver fails the write (the tick logs it and goes on), never the loop."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from common.kubeapi import STRATEGIC_PATCH, ApiError, KubeAPI
from policies import STATUS as LEGACY_STATUS

log = logging.getLogger("hearth.scaler")
FIELD_MANAGER = "hearth-scaler"


class KubeWriter:
    def __init__(self, api: KubeAPI, identity: str) -> None:
        self.api = api
        self.identity = identity

    async def scale(
        self, namespace: str, name: str, replicas: int, attempts: int = 3, expect: int | None = None
    ) -> int | None:
        """Write replicas through the scale subresource with optimistic concurrency, retrying conflicts.
        Returns the replicas it replaced (None when it gave up). With `expect`, writes only over that count
        (and returns what it found otherwise)."""
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"
        for _ in range(attempts):
            scale = await self.api.get(path)
            before = int((scale.get("spec") or {}).get("replicas") or 0)
            if before == replicas or (expect is not None and before != expect):
                return before
            body = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "resourceVersion": (scale.get("metadata") or {}).get("resourceVersion"),
                },
                "spec": {"replicas": replicas},
            }
            try:
                await self.api.put(path, body, {"fieldManager": FIELD_MANAGER})
            except ApiError as exc:
                if exc.status == 409:
                    continue  # someone wrote in between: read again
                raise
            return before
        log.warning("gave up scaling %s/%s after %d conflicts", namespace, name, attempts)
        return None

    async def mark(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        """Labels only: a Deployment's generation moves with its spec and annotations, not its labels. The
        annotation that older Hearths kept their status in is removed on the way (a no-op once gone)."""
        body = {"metadata": {"labels": labels, "annotations": {LEGACY_STATUS: None}}}
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        await self.api.patch(path, body, {"fieldManager": FIELD_MANAGER})

    async def condition(self, namespace: str, name: str, condition: dict[str, str]) -> None:
        """Hearth's condition in the Deployment's status: a strategic merge patch, so the controller's own
        conditions (merged by type) stay as they are."""
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"
        body = {"status": {"conditions": [condition]}}
        await self.api.patch(path, body, {"fieldManager": FIELD_MANAGER}, content_type=STRATEGIC_PATCH)

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
        await self.api.post(f"/api/v1/namespaces/{meta['namespace']}/events", body)

    async def deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        """Busy pods cost more to delete, so a scale-down removes idle pods first."""
        body = {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": str(cost)}}}
        await self.api.patch(f"/api/v1/namespaces/{namespace}/pods/{pod}", body, {"fieldManager": FIELD_MANAGER})

    async def delete_pod(self, namespace: str, pod: str, uid: str) -> None:
        """Delete a pod that waits unbound (vendor fallback); the uid precondition spares a pod of the same
        name made since."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        await self.api.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{pod}", body)
