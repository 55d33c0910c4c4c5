"""The leader's record of who holds a contested plain model name (policies.names): a ConfigMap in
Hearth's namespace, which tenants cannot write, updated when a model appears, goes or changes its names.
Written with the resourceVersion read last, so a second writer (a leader that has just lost its Lease)
gets a conflict and re-reads instead of overwriting."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from common.informer import resource_path
from common.kubeapi import ApiError, KubeAPI
from policies import NAMES_CONFIGMAP, assign_names, claimant_of, names_configmap, names_of_configmap

log = logging.getLogger("hearth.scaler.names")


class NameRecord:
    def __init__(self, api: KubeAPI, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.path = resource_path("v1", "configmaps", namespace)
        self.recorded: dict[str, str] | None = None  # None: to be read
        self.version: str | None = None

    async def sync(self, deployments: Iterable[Mapping[str, Any]]) -> None:
        """Record the names after this tick's Deployments (a read first when the record is unknown)."""
        if self.recorded is None:
            await self._read()
        recorded = self.recorded or {}
        names = assign_names(recorded, [claimant_of(d) for d in deployments])
        if names == recorded:
            return
        body = names_configmap(self.namespace, names)
        try:
            if self.version is None:
                saved = await self.api.post(self.path, body)
            else:
                body["metadata"]["resourceVersion"] = self.version
                saved = await self.api.put(f"{self.path}/{NAMES_CONFIGMAP}", body)
        except ApiError as exc:
            if exc.status in (404, 409):
                self.recorded = None  # changed or gone under us: read again next tick
            raise
        self.recorded, self.version = names, str(saved["metadata"]["resourceVersion"])
        log.info("model names recorded: %d", len(names))

    async def _read(self) -> None:
        try:
            found = await self.api.get(f"{self.path}/{NAMES_CONFIGMAP}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            self.recorded, self.version = {}, None
            return
        self.version = str(found["metadata"]["resourceVersion"])
        try:
            self.recorded = names_of_configmap(found)
        except ValueError as exc:
            log.warning("the model names record is broken (%s); it is rebuilt by creation time", exc)
            self.recorded = {}
