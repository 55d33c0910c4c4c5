"""Argo CD's health checks (manifests/argocd/argocd-cm-health.yaml, run in gopher-lua as Argo CD runs them)
on live objects of the local cluster, in every phase a model goes through."""

from __future__ import annotations

import concurrent.futures
import json
import time

import openai
import pytest

from devcluster.cluster import Cluster
from devcluster.models import simulated_model
from tests.e2e.conftest import MESSAGES, Snapshots, apply, phase, sdk, wait_for
from tests.test_argocd_health import DEPLOYMENT, RUNTIME, health

pytestmark = pytest.mark.e2e


def test_argo_cd_sees_each_phase_of_a_model_and_why_one_is_degraded(cluster: Cluster, namespace: str) -> None:
    apply(cluster, simulated_model(namespace, "argo", max_replicas=3, target=1, startup="5s", itl="20ms"))
    refused = simulated_model(namespace, "argo-refused")
    refused["spec"]["template"]["metadata"]["annotations"]["hearth.dev/runtime"] = "no-such-runtime"
    apply(cluster, refused)
    at_zero = lambda: all(phase(cluster, namespace, n) == "ScaledToZero" for n in ("argo", "argo-refused"))  # noqa: E731
    wait_for("both at zero", at_zero, timeout=30)
    client = sdk(cluster, namespace)
    with Snapshots(cluster, namespace, "argo") as snapshots:
        time.sleep(0.5)  # ScaledToZero seen first
        with concurrent.futures.ThreadPoolExecutor(3) as pool:  # demand 3, target 1: 0 -> 1 -> 3 replicas
            streams = [
                pool.submit(
                    lambda: list(
                        client.chat.completions.create(model="argo", messages=MESSAGES, stream=True, max_tokens=400)
                    )
                )
                for _ in range(3)
            ]
            wait_for("the phases", lambda: {"Activating", "Ready", "Scaling"} <= set(snapshots.by_phase), timeout=90)
            for stream in streams:
                stream.result(timeout=120)
    with Snapshots(cluster, namespace, "argo-refused") as failed:
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="argo-refused", messages=MESSAGES, max_tokens=2)
        wait_for("phase Degraded", lambda: "Degraded" in failed.by_phase, timeout=30)
    phases = ["ScaledToZero", "Activating", "Ready", "Scaling"]
    seen = dict(zip(phases, health(DEPLOYMENT, *(snapshots.by_phase[p] for p in phases)), strict=True))
    assert {p: s for p, (s, _) in seen.items()} == {
        "ScaledToZero": "Healthy",
        "Activating": "Progressing",
        "Ready": "Healthy",
        "Scaling": "Progressing",
    }, seen
    ((status, message),) = health(DEPLOYMENT, failed.by_phase["Degraded"])
    assert status == "Degraded" and "no-such-runtime" in message, message
    runtime = json.loads(cluster.kubectl("get", "inferenceruntime", "sim-nvidia", "-o", "json").stdout)
    assert health(RUNTIME, runtime)[0][0] == "Healthy"
