"""Hearth's one informer against the real apiserver: list with a selector, watch, skip what is malformed.
(410 Gone, resuming and backoff are in tests/test_informer.py: the apiserver gives no 410 on demand.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from common.informer import Informer, InformerMetrics, resource_path
from common.kubeapi import KubeAPI
from devcluster.cluster import Cluster
from tests.e2e.conftest import apply

pytestmark = pytest.mark.e2e


def config_map(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"watched": "yes"}},
        "data": data,
    }


def no_bad_key(obj: dict[str, Any]) -> None:
    if "bad" in (obj.get("data") or {}):
        raise ValueError("has a bad key")


def sample(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name, {"resource": "configmaps"}) or 0.0


def test_list_watch_and_skip_what_is_malformed(cluster: Cluster, namespace: str) -> None:
    apply(cluster, config_map(namespace, "a", value="1"))
    apply(cluster, config_map(namespace, "b", value="1"))
    unwatched = config_map(namespace, "unwatched", value="1")
    del unwatched["metadata"]["labels"]
    apply(cluster, unwatched)
    malformed: list[tuple[str, str]] = []

    async def scenario() -> None:
        api = KubeAPI.connect(str(cluster.layout.kubeconfig))
        registry = CollectorRegistry()
        views: list[dict[str, Any]] = []
        changed = asyncio.Event()

        def on_change(objects: Mapping[str, dict[str, Any]]) -> None:
            views.append(dict(objects))
            changed.set()

        async def until(what: str, condition: Callable[[], bool]) -> None:
            """Wait for `condition`, re-checked at each change of the view (30 s at most)."""
            try:
                async with asyncio.timeout(30):
                    while not condition():
                        changed.clear()
                        await changed.wait()
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}") from None

        informer = Informer(
            api,
            resource_path("v1", "configmaps", namespace),
            on_change,
            selector="watched=yes",
            check=no_bad_key,
            on_malformed=lambda obj, problem: malformed.append((obj["metadata"]["name"], problem)),
            metrics=InformerMetrics(registry),
        )
        task = asyncio.create_task(informer.run())
        try:
            await until("synced", informer.synced.is_set)
            assert set(informer.objects) == {f"{namespace}/a", f"{namespace}/b"}  # the selector applies

            # A malformed object is left out and reported once, whatever else happens.
            await asyncio.to_thread(apply, cluster, config_map(namespace, "c", bad="x"))
            await asyncio.to_thread(apply, cluster, config_map(namespace, "b", value="2"))
            await until("b's change", lambda: informer.objects[f"{namespace}/b"]["data"]["value"] == "2")
            assert f"{namespace}/c" not in informer.objects
            assert malformed == [("c", "has a bad key")]
            assert sample(registry, "hearth_informer_malformed_objects_total") == 1

            # Fixed, it is admitted; deleted, it goes.
            await asyncio.to_thread(apply, cluster, config_map(namespace, "c", value="ok"))
            await until("c admitted", lambda: f"{namespace}/c" in informer.objects)
            await asyncio.to_thread(cluster.kubectl, "delete", "configmap", "a", "-n", namespace)
            await until("a removed", lambda: f"{namespace}/a" not in informer.objects)

            assert views[-1] == informer.objects
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await api.aclose()

    asyncio.run(scenario())
