"""`hearth cache agent`: one per node (a DaemonSet), keeper of that node's model cache.

Every interval it
  - labels its Node with the models the cache holds complete (`cache.hearth.dev/m-<digest>: "true"`, and
    the annotation `cache.hearth.dev/models` mapping each label to its model), which the webhook's preferred
    node affinity steers cold starts towards;
  - evicts, least recently used first, when the cache passes the high watermark of its runtimes'
    `cache.size`, never a model that a pod on this node loads (the `cache.hearth.dev/model` annotation of
    every pod bound here), nor one a fetch holds or used since the pods were listed;
  - removes the scratch folders of fetches that died;
  - exports the cache's sizes, fetch outcomes (hits, downloads, repairs) and evictions as metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from common.kubeapi import ApiError, KubeAPI
from nodecache.settings import AgentSettings
from nodecache.store import Store, free_bytes
from policies import (
    CACHE_LABEL_PREFIX,
    CACHE_LABEL_VALUE,
    CACHED_MODEL,
    ENABLED_LABEL,
    CacheEntry,
    evictions,
    node_label,
    quantity_bytes,
    valid_runtimes,
)

log = logging.getLogger("hearth.cache")
MODELS_ANNOTATION = "cache.hearth.dev/models"
RUNTIMES_PATH = "/apis/serving.hearth.dev/v1alpha1/inferenceruntimes"


@dataclass(frozen=True)
class Limits:
    capacity: int
    high: int
    low: int
    runtime: str


def limits_of(runtimes: Iterable[Mapping[str, Any]], host_path: str) -> Limits | None:
    """The smallest size that a runtime with a cache at `host_path` gives it (with that runtime's
    watermarks); None when no runtime uses it (nothing is evicted then)."""
    found: list[Limits] = []
    for runtime in valid_runtimes(runtimes):
        cache = runtime.spec.cache
        if cache is not None and cache.host_path.rstrip("/") == host_path.rstrip("/"):
            found.append(
                Limits(
                    quantity_bytes(cache.size), cache.high_watermark_percent, cache.low_watermark_percent, runtime.name
                )
            )
    return min(found, key=lambda limits: limits.capacity) if found else None


def in_use(pods: Iterable[Mapping[str, Any]]) -> set[str]:
    """The cache entries the pods bound to this node load (finished pods load nothing). Only a pod Hearth's
    webhook rendered (the opt-in label: the webhook sees every such pod, and writes the annotation itself)
    says which entry it loads; on any other pod the annotation is a tenant's, which would keep a model
    from eviction for ever (the admission policy hearth-pod-annotations refuses those pods too)."""
    used = set()
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get(ENABLED_LABEL) != "true":
            continue
        key = (meta.get("annotations") or {}).get(CACHED_MODEL)
        if isinstance(key, str):
            used.add(key)
    return used


def label_patch(current: Mapping[str, str], annotations: Mapping[str, str], keys: Iterable[str]) -> dict[str, Any]:
    """The merge patch that makes the node's cache labels and annotation say `keys` (empty: nothing to do)."""
    wanted = {node_label(key): key for key in keys}
    labels: dict[str, str | None] = {
        name: CACHE_LABEL_VALUE for name in wanted if current.get(name) != CACHE_LABEL_VALUE
    }
    labels.update({name: None for name in current if name.startswith(CACHE_LABEL_PREFIX) and name not in wanted})
    summary = json.dumps({name.removeprefix(CACHE_LABEL_PREFIX): key for name, key in sorted(wanted.items())})
    meta: dict[str, Any] = {}
    if labels:
        meta["labels"] = labels
    if annotations.get(MODELS_ANNOTATION) != summary:
        meta["annotations"] = {MODELS_ANNOTATION: summary}
    return {"metadata": meta} if meta else {}


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.capacity = Gauge(
            "hearth_cache_capacity_bytes", "The cache's size from its runtimes.", ["node"], registry=registry
        )
        self.used = Gauge(
            "hearth_cache_used_bytes", "Bytes of complete models in the cache.", ["node"], registry=registry
        )
        self.free = Gauge(
            "hearth_cache_disk_free_bytes", "Free bytes of the cache's disk.", ["node"], registry=registry
        )
        self.model = Gauge(
            "hearth_cache_model_bytes", "Each cached model's size.", ["node", "model"], registry=registry
        )
        self.model_in_use = Gauge(
            "hearth_cache_model_in_use",
            "1 while a pod on the node loads the model.",
            ["node", "model"],
            registry=registry,
        )
        self.fetches = Counter(
            "hearth_cache_fetches",
            "Fetches by outcome: hit, download, repair, update (the hub's revision moved).",
            ["node", "outcome"],
            registry=registry,
        )
        self.downloaded = Counter(
            "hearth_cache_downloaded_bytes", "Bytes downloaded from the hub.", ["node"], registry=registry
        )
        self.evictions = Counter("hearth_cache_evictions", "Models evicted.", ["node"], registry=registry)
        self.failures = Counter(
            "hearth_cache_agent_failures", "Passes that failed.", ["node", "step"], registry=registry
        )


@dataclass
class EventTail:
    """Reads the fetchers' event log from where it stopped (starting over when it was rotated)."""

    path: Path
    offset: int = 0
    inode: int = 0

    def new_events(self) -> list[dict[str, Any]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            self.inode, self.offset = stat.st_ino, 0
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        events = []
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events


@dataclass
class Agent:
    settings: AgentSettings
    api: KubeAPI
    metrics: AgentMetrics
    store: Store = field(init=False)
    tail: EventTail = field(init=False)
    known: set[str] = field(default_factory=set)  # models with metric children

    def __post_init__(self) -> None:
        self.store = Store(self.settings.root)
        self.tail = EventTail(self.store.meta / "events.jsonl")
        self.tail.new_events()  # counters start at this agent's start: earlier outcomes are history

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except Exception as exc:
                self.metrics.failures.labels(self.settings.node, "pass").inc()
                log.warning("cache pass failed: %s", exc)
            await asyncio.sleep(self.settings.interval)

    async def once(self) -> None:
        node = self.settings.node
        listed_at = time.time()
        pods = await self.api.get("/api/v1/pods", {"fieldSelector": f"spec.nodeName={node}"})
        used = in_use(pods.get("items") or [])
        runtimes = await self.api.get(RUNTIMES_PATH)
        limits = limits_of(runtimes.get("items") or [], self.settings.host_path)
        # Disk work (removing a model of many GB, reading manifests) in a thread: /healthz and /metrics answer.
        if limits is not None:
            for key in await asyncio.to_thread(self._evict, limits, used, listed_at):
                log.info("evicted %s (least recently used; the cache was above %d %%)", key, limits.high)
                self.metrics.evictions.labels(node).inc()
        swept = await asyncio.to_thread(self.store.sweep_dead)
        if swept:
            log.info("removed %d scratch folders of fetches that died", swept)
        keys = await asyncio.to_thread(self.store.models)
        await self._label(keys)
        self._export(keys, used, limits)

    def _evict(self, limits: Limits, used: set[str], listed_at: float) -> list[str]:
        entries = [CacheEntry(k, self.store.size(k), self.store.last_used(k), k in used) for k in self.store.models()]
        gone = []
        for key in evictions(entries, limits.capacity, limits.high, limits.low):
            with self.store.try_locked(key) as free:
                # A fetch holds it, or a pod found it after the pods were listed: it stays.
                if free and self.store.last_used(key) < listed_at:
                    self.store.remove(key)
                    gone.append(key)
        return gone

    async def _label(self, keys: list[str]) -> None:
        path = f"/api/v1/nodes/{self.settings.node}"
        node = await self.api.get(path)
        meta = node.get("metadata") or {}
        patch = label_patch(meta.get("labels") or {}, meta.get("annotations") or {}, keys)
        if patch:
            await self.api.patch(path, patch, {"fieldManager": "hearth-cache-agent"})
            log.info("node %s labelled with %d cached models", self.settings.node, len(keys))

    def _export(self, keys: list[str], used: set[str], limits: Limits | None) -> None:
        node, m = self.settings.node, self.metrics
        sizes = {key: self.store.size(key) for key in keys}
        m.used.labels(node).set(sum(sizes.values()))
        m.capacity.labels(node).set(limits.capacity if limits else 0)
        with contextlib.suppress(OSError):
            m.free.labels(node).set(free_bytes(self.settings.root))
        for key in self.known - set(keys):
            m.model.remove(node, key)
            m.model_in_use.remove(node, key)
        for key, size in sizes.items():
            m.model.labels(node, key).set(size)
            m.model_in_use.labels(node, key).set(1 if key in used else 0)
        self.known = set(keys)
        for event in self.tail.new_events():
            outcome = str(event.get("outcome"))
            if outcome in ("hit", "download", "repair", "update"):
                m.fetches.labels(node, outcome).inc()
                m.downloaded.labels(node).inc(int(event.get("bytes") or 0))


def create_app(registry: CollectorRegistry, agent: Agent) -> Starlette:
    async def metrics(_: Request) -> Response:
        """Prometheus metrics: the cache's size, models and evictions."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        """200 while the agent runs."""
        ok = agent.store.root.is_dir()
        return PlainTextResponse("ok" if ok else f"{agent.store.root} is not a folder", 200 if ok else 500)

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])


async def serve(settings: AgentSettings) -> None:
    settings.root.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    api = KubeAPI.connect(str(settings.kubeconfig) if settings.kubeconfig else None, settings.in_cluster or None)
    agent = Agent(settings, api, AgentMetrics(registry))
    task = asyncio.create_task(agent.run())
    config = uvicorn.Config(
        create_app(registry, agent),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        task.cancel()
        with contextlib.suppress(ApiError, OSError):
            await api.aclose()
