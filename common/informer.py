"""One informer for every cluster view in Hearth: list, then watch from the last resourceVersion, on the
service's event loop.

- Every call has a timeout: a list page 30 s; a watch asks the apiserver to end it after 5 to 10 minutes
  (client-go's spread) and gives up on a connection silent for longer than that plus 30 s (bookmarks,
  which it asks for, keep a healthy watch talking and carry the resourceVersion forward).
- A watch that ends, or fails, is resumed from the last resourceVersion seen; 410 Gone (too old) lists
  again. Failures back off exponentially with full jitter (0.5 s doubling to 30 s), reset by a list.
- A malformed object (`check` raises ValueError) is skipped: left out of the view as if absent, logged
  with its name, counted, and handed to `on_malformed` once per version; it never affects another object.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from common.kubeapi import ApiError, KubeAPI
from policies import model_key_of  # namespace/name, of any object

log = logging.getLogger("hearth.informer")
Obj = dict[str, Any]
LIST_PAGE = 500
LIST_TIMEOUT = 30.0
WATCH_SECONDS = (300, 600)
SILENCE_GRACE = 30.0


class Gone(Exception):
    """The resourceVersion is too old (410): list again."""


class InformerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.malformed = Counter(
            "hearth_informer_malformed_objects",
            "Objects skipped because they are malformed (e.g. a forged hearth.dev/rendered stamp), by resource.",
            ["resource"],
            registry=registry,
        )
        self.restarts = Counter(
            "hearth_informer_restarts",
            "Lists and watches that failed and were retried after a backoff, by resource.",
            ["resource"],
            registry=registry,
        )
        self.relists = Counter(
            "hearth_informer_relists",
            "Full lists (the first, and after 410 Gone or a failure).",
            ["resource"],
            registry=registry,
        )


class Backoff:
    """Exponential backoff with full jitter: each delay is uniform in [0, min(cap, base * 2^attempt)]."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not secrecy

    def reset(self) -> None:
        self.attempt = 0


class Informer:
    """Keeps `objects` ({namespace/name: object}) equal to what `path` lists; calls `on_change(objects)`
    (a read-only view) after each list and each event that changed it. `synced` is set after the first list."""

    def __init__(
        self,
        api: KubeAPI,
        path: str,
        on_change: Callable[[Mapping[str, Obj]], None],
        *,
        selector: str | None = None,
        check: Callable[[Obj], object] | None = None,
        on_malformed: Callable[[Obj, str], None] | None = None,
        metrics: InformerMetrics | None = None,
        resource: str | None = None,
        backoff: Backoff | None = None,
        transform: Callable[[Obj], Obj] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.api = api
        self.path = path
        self.on_change = on_change
        self.selector = selector
        self.check = check
        self.on_malformed = on_malformed
        self.metrics = metrics
        self.resource = resource or path.rsplit("/", 1)[-1]
        self.backoff = backoff or Backoff()
        # What is kept of an admitted object (e.g. a Secret's parsed key, not its data); a transform that
        # raises ValueError refuses the object as `check` does, so a parse need not run twice.
        self.transform = transform
        self.on_error = on_error  # told of each failed list or watch (before the backoff), e.g. a 403
        self.objects: dict[str, Obj] = {}
        self.malformed: dict[str, str] = {}  # key -> resourceVersion already reported
        self.synced = asyncio.Event()
        self._version = ""

    @property
    def view(self) -> Mapping[str, Obj]:
        return MappingProxyType(self.objects)

    async def run(self) -> None:
        """Forever (until cancelled): list, then watch. A watch that fails is resumed, after a backoff, from
        the last resourceVersion seen (so is a cancelled `run` started again); 410 Gone lists again."""
        while True:
            try:
                if not self._version:
                    await self._list()
                    self.backoff.reset()
                while True:
                    await self._watch()
            except Gone:
                log.info("%s: resourceVersion too old; listing again", self.resource)
                self._version = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.on_error is not None:
                    self.on_error(exc)
                delay = self.backoff.next()
                if self.metrics is not None:
                    self.metrics.restarts.labels(self.resource).inc()
                log.warning(
                    "%s: list/watch failed (%s: %s); retrying in %.1fs", self.resource, type(exc).__name__, exc, delay
                )
                await asyncio.sleep(delay)

    def _params(self) -> dict[str, str | int]:
        return {"labelSelector": self.selector} if self.selector else {}

    async def _list(self) -> None:
        if self.metrics is not None:
            self.metrics.relists.labels(self.resource).inc()
        listed: dict[str, Obj] = {}
        token = ""
        while True:
            params = {**self._params(), "limit": LIST_PAGE, **({"continue": token} if token else {})}
            try:
                page = await self.api.request("GET", self.path, params=params, time_limit=LIST_TIMEOUT)
            except ApiError as exc:
                if exc.status == 410:
                    raise Gone from exc
                raise
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    listed[model_key_of(item)] = item
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                self._version = str(meta.get("resourceVersion", ""))
                break
        self.objects = {}
        seen_malformed = dict(self.malformed)
        self.malformed = {}
        for key, obj in listed.items():
            kept = self._admit(key, obj, seen_malformed.get(key))
            if kept is not None:
                self.objects[key] = kept
        self.synced.set()
        self.on_change(self.view)

    async def _watch(self) -> None:
        seconds = random.randint(*WATCH_SECONDS)  # noqa: S311 - spreading reconnects, not secrecy
        params = {
            **self._params(),
            "resourceVersion": self._version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": seconds,
        }
        try:
            async with self.api.watch(self.path, params, read_timeout=seconds + SILENCE_GRACE) as events:
                async for event in events:
                    self._apply(event)
        except ApiError as exc:
            if exc.status == 410:
                raise Gone from exc
            raise

    def _apply(self, event: Obj) -> None:
        kind, obj = event.get("type"), event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone
            raise ApiError(int(obj.get("code") or 500), str(obj.get("message") or "watch error"))
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if version:
            self._version = version
        if kind == "BOOKMARK":
            return
        key = model_key_of(obj)
        if kind == "DELETED":
            self.malformed.pop(key, None)
            if self.objects.pop(key, None) is not None:
                self.on_change(self.view)
            return
        if kind not in ("ADDED", "MODIFIED"):
            return
        kept = self._admit(key, obj, self.malformed.get(key))
        if kept is not None:
            self.malformed.pop(key, None)
            self.objects[key] = kept
            self.on_change(self.view)
        elif self.objects.pop(key, None) is not None:
            self.on_change(self.view)

    def _admit(self, key: str, obj: Obj, reported: str | None) -> Obj | None:
        """What is kept of `obj` when it passes `check` and `transform`; else None, and it is reported (once
        per resourceVersion) and skipped."""
        try:
            if self.check is not None:
                self.check(obj)
            return obj if self.transform is None else self.transform(obj)
        except ValueError as exc:
            version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            self.malformed[key] = version
            if reported != version:
                log.warning("%s %s skipped: %s", self.resource, key, exc)
                if self.metrics is not None:
                    self.metrics.malformed.labels(self.resource).inc()
                if self.on_malformed is not None:
                    self.on_malformed(obj, str(exc))
            return None


def resource_path(group_version: str, plural: str, namespace: str | None = None) -> str:
    """`/api/v1/pods`, `/apis/apps/v1/namespaces/ns/deployments`, ..."""
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
