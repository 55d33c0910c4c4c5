"""Prewarm: the scaler's loop that puts models marked `hearth.dev/prewarm` into the node cache of the nodes
that could run them, with one Job per missing node (policies.prewarm), and tells how far it got: Events on
the Deployment (Prewarming, Prewarmed, PrewarmFailed with the fetcher's own words), the gauge
`hearth_scaler_prewarm_nodes{model,state}`, and `prewarmed N/M` in Hearth's condition (`hearth status`).

It reads nodes, runtimes and its Jobs with plain list calls every pass (a few seconds apart) and only
when some Deployment asks for prewarm; the node agents' labels say which nodes hold which model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.kubeapi import ApiError, KubeAPI
from policies import (
    PREWARM_FOR,
    PREWARM_NODE,
    Collector,
    ContractError,
    InferenceRuntime,
    PrewarmPlan,
    model_key,
    model_key_of,
    parse_pod,
    prewarm_fetch,
    prewarm_job,
    prewarm_job_name,
    prewarm_job_state,
    prewarm_plan,
    scale_of,
    select_runtime,
    valid_runtimes,
)
from scaler.kube import KubeWriter
from scaler.metrics import ScalerMetrics

log = logging.getLogger("hearth.scaler")
RUNTIMES = "/apis/serving.hearth.dev/v1alpha1/inferenceruntimes"
Obj = dict[str, Any]


@dataclass
class Progress:
    """What was reported for one model, so that each Event is written once."""

    warm: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # Job names
    refused: str | None = None


class Prewarmer:
    def __init__(self, api: KubeAPI, writer: KubeWriter, metrics: ScalerMetrics, image: str) -> None:
        self.api = api
        self.writer = writer
        self.metrics = metrics
        self.image = image
        self.progress: dict[str, Progress] = {}
        self.summaries: dict[str, str] = {}  # model key -> "held/wanted", for the condition

    async def runtimes(self) -> list[InferenceRuntime]:
        """The valid InferenceRuntimes, listed now (also for the vendor fallback, scaler.room)."""
        return valid_runtimes((await self.api.get(RUNTIMES)).get("items") or [])

    async def sync(self, deployments: Mapping[str, Obj]) -> None:
        wanted = {k: d for k, d in deployments.items() if scale_of(d).prewarm > 0}
        for gone in [k for k in self.progress if k not in wanted]:
            del self.progress[gone]
            self.summaries.pop(gone, None)
            self.metrics.forget_prewarm(gone)
        if not wanted:
            return
        nodes = (await self.api.get("/api/v1/nodes")).get("items") or []
        runtimes = await self.runtimes()
        listed = (await self.api.get("/apis/batch/v1/jobs", {"labelSelector": PREWARM_FOR})).get("items") or []
        jobs = {model_key_of(j): j for j in listed}
        for key, deployment in wanted.items():
            try:
                await self._one(key, deployment, nodes, runtimes, jobs)
            except ApiError as exc:
                self.metrics.failures.labels("prewarm").inc()
                log.warning("prewarming %s failed: %s", key, exc)

    async def _one(
        self, key: str, deployment: Obj, nodes: list[Obj], runtimes: list[InferenceRuntime], jobs: dict[str, Obj]
    ) -> None:
        first = key not in self.progress
        progress = self.progress.setdefault(key, Progress())
        template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
        spec = parse_pod({str(k): str(v) for k, v in (template.get("annotations") or {}).items()}, Collector())
        if spec is None or spec.model is None:
            await self._refuse(deployment, progress, "it has no valid hearth.dev/model to fetch")
            return
        try:
            runtime = select_runtime(spec, runtimes)
            fetch = prewarm_fetch(deployment, runtime, spec)
        except ContractError as refused:
            await self._refuse(deployment, progress, f"its model or runtime is not valid: {refused.message or 'none'}")
            return
        if fetch is None:
            why = "needs an hf:// or modelscope:// model and a runtime with spec.cache" + f" (runtime {runtime.name})"
            await self._refuse(deployment, progress, why)
            return
        progress.refused = None
        namespace = str(deployment["metadata"]["namespace"])
        name = str(deployment["metadata"]["name"])
        chosen: PrewarmPlan = prewarm_plan(fetch.key, runtime, nodes, scale_of(deployment).prewarm)
        if first:  # warm before this replica led (or before the annotation): no Event to repeat
            progress.warm = set(chosen.warm)
        states = {"warm": 0, "fetching": 0, "failed": 0}
        for node in chosen.targets:
            if node in chosen.warm:
                states["warm"] += 1
                if node not in progress.warm:
                    progress.warm.add(node)
                    await self.writer.event(deployment, "Prewarmed", f"{spec.model.uri} is in the cache of node {node}")
                continue
            job_key = model_key(namespace, prewarm_job_name(name, node))
            job = jobs.get(job_key)
            if job is None:
                body = prewarm_job(deployment, runtime, spec, node, self.image)
                if body is None:
                    continue
                await self.api.post(f"/apis/batch/v1/namespaces/{namespace}/jobs", body)
                progress.failed.discard(job_key)
                states["fetching"] += 1
                message = f"fetching {spec.model.uri} into the cache of node {node} (Job {body['metadata']['name']})"
                log.info("%s: %s", key, message)
                await self.writer.event(deployment, "Prewarming", message)
            elif prewarm_job_state(job) == "failed":
                states["failed"] += 1
                if job_key not in progress.failed:
                    progress.failed.add(job_key)
                    why = await self._failure(namespace, job)
                    text = f"fetching {spec.model.uri} onto node {node} failed: {why}"
                    await self.writer.event(deployment, "PrewarmFailed", text[:1000], kind="Warning")
            else:
                states["fetching"] += 1
        progress.warm &= set(chosen.warm)
        self.summaries[key] = chosen.summary()
        for state, count in states.items():
            self.metrics.prewarm.labels(key, state).set(count)

    async def _refuse(self, deployment: Obj, progress: Progress, why: str) -> None:
        key = model_key_of(deployment)
        self.summaries.pop(key, None)
        if progress.refused != why:
            progress.refused = why
            await self.writer.event(deployment, "PrewarmRefused", f"hearth.dev/prewarm: {why}"[:1000], kind="Warning")

    async def _failure(self, namespace: str, job: Obj) -> str:
        """The fetcher's termination message from the Job's last failed pod, else the Job's condition."""
        name = job["metadata"]["name"]
        pods = await self.api.get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": f"job-name={name}"})
        for pod in sorted(
            pods.get("items") or [], key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True
        ):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                ended = (status.get("state") or {}).get("terminated") or {}
                if ended.get("exitCode") not in (0, None) and ended.get("message"):
                    return str(ended["message"]).strip()
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Failed":
                return str(condition.get("message") or condition.get("reason"))
        return f"Job {name} failed on node {job['metadata'].get('annotations', {}).get(PREWARM_NODE)}"
