"""The InferenceRuntimes the webhook renders from, kept in memory: no API call on the admission path.

They come from a file (`--runtimes`, for a single box and for tests) or from a watch of the cluster's
InferenceRuntime objects. An invalid object in the cluster is logged and left out, never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from policies import GROUP, KIND, ContractError, InferenceRuntime, runtime_from_object

log = logging.getLogger("hearth.webhook.runtimes")
PLURAL = "inferenceruntimes"


class RuntimeStore:
    """A snapshot that readers take without locking; writers swap in a new tuple."""

    def __init__(self, runtimes: Iterable[InferenceRuntime] = ()) -> None:
        self._by_name: dict[str, InferenceRuntime] = {r.name: r for r in runtimes}
        self._snapshot: tuple[InferenceRuntime, ...] = tuple(self._by_name.values())
        self._lock = threading.Lock()
        self.synced = threading.Event()

    def snapshot(self) -> tuple[InferenceRuntime, ...]:
        return self._snapshot

    def replace(self, runtimes: Iterable[InferenceRuntime]) -> None:
        with self._lock:
            self._by_name = {r.name: r for r in runtimes}
            self._snapshot = tuple(self._by_name.values())

    def upsert(self, runtime: InferenceRuntime) -> None:
        with self._lock:
            self._by_name[runtime.name] = runtime
            self._snapshot = tuple(self._by_name.values())

    def delete(self, name: str) -> None:
        with self._lock:
            self._by_name.pop(name, None)
            self._snapshot = tuple(self._by_name.values())


def load_runtimes(path: Path) -> list[InferenceRuntime]:
    """Every InferenceRuntime document in a YAML file, or in the *.yaml files of a folder."""
    files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
    runtimes: list[InferenceRuntime] = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, Mapping) and doc.get("kind") == KIND:
                runtimes.append(runtime_from_object(doc))
    return runtimes


def _parse(obj: Mapping[str, Any]) -> InferenceRuntime | None:
    try:
        return runtime_from_object(obj)
    except ContractError as exc:
        log.warning("ignoring invalid InferenceRuntime: %s", exc.message)
        return None


class RuntimeWatch:
    """Lists then watches InferenceRuntimes in a daemon thread, resuming from the last resourceVersion and
    re-listing when the apiserver says it is too old (410 Gone)."""

    def __init__(self, store: RuntimeStore, api_client: Any, version: str = "v1alpha1") -> None:
        self._store = store
        self._api_client = api_client
        self._version = version
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runtime-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from kubernetes import client, watch
        from kubernetes.client.exceptions import ApiException

        api = client.CustomObjectsApi(self._api_client)
        backoff = 1.0
        while not self._stop.is_set():
            try:
                listed = cast(dict[str, Any], api.list_cluster_custom_object(GROUP, self._version, PLURAL))
                parsed = [r for r in (_parse(item) for item in listed.get("items", [])) if r is not None]
                self._store.replace(parsed)
                self._store.synced.set()
                resource_version = listed["metadata"]["resourceVersion"]
                log.info("runtimes synced: %s", ", ".join(r.name for r in parsed) or "(none)")
                backoff = 1.0
                stream = watch.Watch().stream(
                    api.list_cluster_custom_object,
                    GROUP,
                    self._version,
                    PLURAL,
                    resource_version=resource_version,
                    timeout_seconds=300,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    self._apply(event)
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("runtime watch failed (%s); retrying in %.0fs", exc.reason, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
            except Exception as exc:
                log.warning("runtime watch interrupted (%s); retrying in %.0fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def _apply(self, event: Mapping[str, Any]) -> None:
        obj = event.get("object")
        if not isinstance(obj, Mapping):
            return
        name = str((obj.get("metadata") or {}).get("name", ""))
        if event.get("type") == "DELETED":
            self._store.delete(name)
            log.info("runtime deleted: %s", name)
        elif event.get("type") in ("ADDED", "MODIFIED"):
            runtime = _parse(obj)
            if runtime is None:
                self._store.delete(name)
            else:
                self._store.upsert(runtime)
                log.info("runtime %s: %s", str(event.get("type")).lower(), name)
