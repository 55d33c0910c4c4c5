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
from devcluster.models import simulated_model
from tests.e2e.conftest import apply, wait_for
from tests.support import ROOT

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


def test_every_component_reports_its_informers(cluster: Cluster, namespace: str) -> None:
    """Each component's /metrics counts the lists of its informers: the webhook's InferenceRuntimes and the
    model-names record (a ConfigMap), the front doors' Deployments, pods, scaler peers, the record and the
    key Secrets, the scalers' Deployments, pods, front-door peers, LLMServices and the namespaces with a
    priority ceiling; the webhooks and scalers
    also every node and pod for the accelerator capacity."""
    import ssl

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    # A model and an API key of this test's own: the front doors read key Secrets only in namespaces that
    # run models (whatever other tests ran before on this cluster).
    cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "manifests" / "tenant"))
    apply(cluster, simulated_model(namespace, "listed"))
    cluster.api_key(namespace)
    tls = ssl.create_default_context(cafile=str(cluster.layout.webhook_tls / "ca.crt"))
    tls.check_hostname = False  # the certificate names the Service; this reaches each pod by address
    expected = {
        "hearth-webhook": ("https", 8443, {"inferenceruntimes", "configmaps", "nodes", "pods/capacity"}),
        "hearth-gateway": ("http", 9090, {"deployments", "pods", "peers", "configmaps", "secrets"}),
        "hearth-scaler": (
            "http",
            8081,
            {"deployments", "pods", "peers", "nodes", "pods/capacity", "llmservices", "namespaces"},
        ),
    }

    def listed_by(pod: dict[str, Any], scheme: str, port: int) -> set[str]:
        url = f"{scheme}://{pod['status']['podIP']}:{port}/metrics"
        try:
            text = httpx.get(url, verify=tls if scheme == "https" else True, timeout=5).text
        except httpx.HTTPError:
            return set()  # not answering yet
        return {
            sample.labels["resource"]
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "hearth_informer_relists_total" and sample.value >= 1
        }

    def every_pod_reports() -> bool:
        for component, (scheme, port, resources) in expected.items():
            serving = [
                p
                for p in cluster.hearth_pods(component)
                if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
            ]
            if len(serving) != 2 or any(listed_by(p, scheme, port) != resources for p in serving):
                return False
        return True

    # A pod restarted by an earlier test may still be starting: wait until each of the six reports.
    wait_for("every component's informers to have listed", every_pod_reports, timeout=60)
