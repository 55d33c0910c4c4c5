"""The LLMService controller: each LLMService compiled into its annotated Deployment, Hearth's status mirrored
back. It runs in the scaler, on the leader only: the scaler is already leader-elected, already watches every
opted-in Deployment (the status it mirrors is the scaler's own) and already writes Deployments; a separate
controller would be one more Deployment, lease and watch of the same objects.

A pass (every `--llmservice-interval`) per LLMService: validate; refuse a Deployment of the same name that
another owner holds (reported as Conflict, never taken over); server-side apply the compiled Deployment with
the field manager `hearth-llmservice` when its spec hash changed (never `spec.replicas`: the scaler's); write
the status when it changed. Every step is idempotent, so a leader killed mid-change leaves nothing the next
one does not finish.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from common.informer import Informer, InformerMetrics, resource_path
from common.kubeapi import ApiError, KubeAPI
from policies import (
    API_VERSION,
    LLMSERVICE_KIND,
    LLMSERVICE_PLURAL,
    ContractError,
    InferenceRuntime,
    compile_deployment,
    llmservice_status,
    model_key,
    parse_llmservice,
    predicted_runtime,
    same_status,
    validate_llmservice,
    with_conditions,
)
from scaler.metrics import ScalerMetrics

log = logging.getLogger("hearth.scaler")
FIELD_MANAGER = "hearth-llmservice"
REPLICAS_MANAGER = "hearth-scaler"  # spec.replicas is handed to it should ours ever own it (see `_hand_over`)
HASH = "serving.hearth.dev/spec-hash"
APPLY_PATCH = "application/apply-patch+yaml"
Obj = dict[str, Any]


def spec_hash(deployment: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(deployment, sort_keys=True).encode()).hexdigest()[:16]


def owned_by(deployment: Mapping[str, Any], uid: str) -> bool:
    refs = (deployment.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs if isinstance(r, Mapping))


def holds_replicas_alone(deployment: Mapping[str, Any]) -> bool:
    """Whether `hearth-llmservice` is the only manager of spec.replicas: our next apply, which leaves it out,
    would then reset it to 1. Not seen here (the mutating webhook's value at creation is owned by no manager),
    but a cluster that attributes admission's changes to the applier would make it so."""
    owners = [
        entry.get("manager")
        for entry in (deployment.get("metadata") or {}).get("managedFields") or []
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    ]
    return owners == [FIELD_MANAGER]


class LLMServiceController:
    def __init__(
        self,
        api: KubeAPI,
        deployments: Callable[[], Mapping[str, Obj]],
        runtimes: Callable[[], Awaitable[list[InferenceRuntime]]],
        metrics: ScalerMetrics,
        informer_metrics: InformerMetrics | None = None,
    ) -> None:
        self.api = api
        self.deployments = deployments  # the scaler's view of opted-in Deployments, by namespace/name
        self.runtimes = runtimes
        self.metrics = metrics
        self.services: Mapping[str, Obj] = {}
        self.informer = Informer(
            api,
            resource_path(API_VERSION, LLMSERVICE_PLURAL),
            self._set,
            metrics=informer_metrics,
            resource=LLMSERVICE_PLURAL,
        )

    def _set(self, objects: Mapping[str, Obj]) -> None:
        self.services = objects

    async def run(self) -> None:
        await self.informer.run()

    async def sync(self) -> None:
        """One pass over every LLMService (the leader's; call only while leading and synced)."""
        if not self.informer.synced.is_set() or not self.services:
            return
        runtimes = await self.runtimes()
        for key, service in sorted(self.services.items()):
            try:
                await self._one(service, runtimes)
            except Exception as exc:
                self.metrics.llmservice_applies.labels("error").inc()
                log.warning("LLMService %s: %s", key, exc)

    async def _one(self, service: Obj, runtimes: list[InferenceRuntime]) -> None:
        meta = service["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        generation = int(meta.get("generation") or 0)
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        deployment = self.deployments().get(model_key(namespace, name))
        problem = conflict = None
        predicted = ""
        try:
            spec = parse_llmservice(service)
            predicted = predicted_runtime(spec, runtimes)
            validate_llmservice(service)
        except ContractError as exc:
            problem = exc.message
        if deployment is None and problem is None:
            deployment = await self._get(path)  # not opted in (or just made): is the name someone else's?
        if deployment is not None and not owned_by(deployment, uid):
            conflict = (
                f"a Deployment {name} that this LLMService does not own is in the namespace; Hearth leaves it "
                "as it is: rename the LLMService, or delete that Deployment to let Hearth make its own"
            )
            deployment = None
        if problem is None and conflict is None:
            try:
                deployment = await self._apply(path, service, deployment)
            except ApiError as exc:  # the apiserver (or an admission policy) refused the Deployment
                if exc.status not in (400, 403, 422):
                    raise
                problem = f"the Deployment it compiles into was refused: {exc.message}"[:1000]
        refused = problem is not None or conflict is not None
        if refused and (service.get("status") or {}).get("phase") not in ("Invalid", "Conflict"):  # once, on entry
            self.metrics.llmservice_applies.labels("invalid" if problem else "conflict").inc()
        status = llmservice_status(generation, deployment, predicted, problem, conflict)
        await self._write_status(service, status)

    async def _get(self, path: str) -> Obj | None:
        try:
            return await self.api.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _apply(self, path: str, service: Obj, current: Obj | None) -> Obj | None:
        desired = compile_deployment(service)
        digest = spec_hash(desired)
        desired["metadata"]["annotations"][HASH] = digest
        if current is not None and holds_replicas_alone(current):
            await self._hand_over(path, current)
        if current is not None and ((current.get("metadata") or {}).get("annotations") or {}).get(HASH) == digest:
            return current
        applied = await self.api.patch(
            path, desired, {"fieldManager": FIELD_MANAGER, "force": "true"}, content_type=APPLY_PATCH
        )
        self.metrics.llmservice_applies.labels("applied").inc()
        log.info("LLMService %s: Deployment %s", path.rsplit("/", 1)[-1], "changed" if current else "created")
        if holds_replicas_alone(applied):
            await self._hand_over(path, applied)
        return applied

    async def _hand_over(self, path: str, deployment: Obj) -> None:
        """Share spec.replicas with the scaler's manager (an apply of that one field, at its current value),
        so that our applies, which never name it, never remove it: the way kubectl hands a field to an HPA."""
        replicas = (deployment.get("spec") or {}).get("replicas")
        meta = deployment["metadata"]
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": replicas},
        }
        await self.api.patch(path, body, {"fieldManager": REPLICAS_MANAGER, "force": "true"}, content_type=APPLY_PATCH)

    async def _write_status(self, service: Obj, status: dict[str, Any]) -> None:
        before = service.get("status")
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        wanted = with_conditions(status, before, now)
        if same_status(before, wanted):
            return
        meta = service["metadata"]
        path = f"{resource_path(API_VERSION, LLMSERVICE_PLURAL, meta['namespace'])}/{meta['name']}/status"
        body = {
            "apiVersion": API_VERSION,
            "kind": LLMSERVICE_KIND,
            "metadata": {"name": meta["name"]},
            "status": wanted,
        }
        await self.api.patch(path, body, {"fieldManager": FIELD_MANAGER})  # a merge patch: the status is ours
        if (before or {}).get("phase") != wanted["phase"]:
            log.info(
                "LLMService %s/%s: %s -> %s",
                meta["namespace"],
                meta["name"],
                (before or {}).get("phase"),
                wanted["phase"],
            )
