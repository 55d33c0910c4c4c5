"""The InferenceRuntimes the webhook renders from, kept in memory: no API call on the admission path.

They come from a file (`--runtimes`, for a single box and for tests) or from a watch of the cluster's
InferenceRuntime objects. An invalid object in the cluster is logged and left out, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from policies import GROUP, KIND, InferenceRuntime, runtime_from_object

if TYPE_CHECKING:
    from common.informer import InformerMetrics
    from common.kubeapi import KubeAPI

log = logging.getLogger("hearth.webhook.runtimes")
PLURAL = "inferenceruntimes"


class RuntimeStore:
    """A snapshot that readers take as it is; writers (on the same event loop) swap in a new tuple."""

    def __init__(self, runtimes: Iterable[InferenceRuntime] = ()) -> None:
        self._snapshot: tuple[InferenceRuntime, ...] = ()
        self.replace(runtimes)

    def snapshot(self) -> tuple[InferenceRuntime, ...]:
        return self._snapshot

    def replace(self, runtimes: Iterable[InferenceRuntime]) -> None:
        self._snapshot = tuple({r.name: r for r in runtimes}.values())


def load_runtimes(path: Path) -> list[InferenceRuntime]:
    """Every InferenceRuntime document in a YAML file, or in the *.yaml files of a folder."""
    files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
    runtimes: list[InferenceRuntime] = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, Mapping) and doc.get("kind") == KIND:
                runtimes.append(runtime_from_object(doc))
    return runtimes


class RuntimeWatch:
    """The cluster's InferenceRuntimes, from Hearth's informer: an invalid object is logged, counted and
    left out (the others keep serving); each valid one is parsed once per resourceVersion."""

    def __init__(
        self, store: RuntimeStore, api: KubeAPI, metrics: InformerMetrics | None = None, version: str = "v1alpha1"
    ) -> None:
        from common.informer import Informer, resource_path  # the client only when watching

        self._store = store
        self._parsed: dict[tuple[str, str], InferenceRuntime] = {}
        path = resource_path(f"{GROUP}/{version}", PLURAL)
        self.informer = Informer(api, path, self._changed, check=self._parse, metrics=metrics, resource=PLURAL)

    def _parse(self, obj: Mapping[str, Any]) -> InferenceRuntime:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("uid", meta.get("name"))), str(meta.get("resourceVersion", "")))
        if key not in self._parsed:
            self._parsed[key] = runtime_from_object(obj)  # ContractError (a ValueError): skipped and logged
        return self._parsed[key]

    def _changed(self, objects: Mapping[str, Mapping[str, Any]]) -> None:
        runtimes = [self._parse(obj) for obj in objects.values()]
        kept = {id(r) for r in runtimes}
        self._parsed = {k: v for k, v in self._parsed.items() if id(v) in kept}
        self._store.replace(runtimes)
        log.info("runtimes: %s", ", ".join(sorted(r.name for r in runtimes)) or "(none)")

    @property
    def synced(self) -> bool:
        return self.informer.synced.is_set()

    async def run(self) -> None:
        await self.informer.run()
