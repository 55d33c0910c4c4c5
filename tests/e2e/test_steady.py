"""Steady short traffic on the real cluster: one short request every 1.5 s, with a scale-down delay of 5 s,
wakes the model once and never lets it fall to zero while the requests keep coming. Demand sampled only at
each tick saw nothing between ticks and scaled it away every few requests (issue 11's trace); the front
doors now count the requests started between ticks, and the scaler windows over them."""

from __future__ import annotations

import time

import pytest

from devcluster.cluster import Cluster
from devcluster.models import simulated_model
from tests.e2e.conftest import MESSAGES, apply, get_json, phase, replicas, sdk, wait_for

pytestmark = pytest.mark.e2e

EVERY = 1.5
REQUESTS = 20


def test_steady_short_requests_wake_the_model_once_and_keep_it(cluster: Cluster, namespace: str) -> None:
    apply(cluster, simulated_model(namespace, "steady", delay="5s", startup="1s", itl="1ms"))
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "steady") == "ScaledToZero", timeout=30)
    client = sdk(cluster, namespace, timeout=60)
    lowest = None
    for index in range(REQUESTS):
        started = time.monotonic()
        answer = client.chat.completions.create(model=f"{namespace}/steady", messages=MESSAGES, max_tokens=2)
        assert answer.choices[0].message.content
        if index:  # after the first (the cold start), the model must never be at zero
            count = replicas(cluster, namespace, "steady")
            lowest = count if lowest is None else min(lowest, count)
        time.sleep(max(0.0, EVERY - (time.monotonic() - started)))
    reasons = [
        e["reason"]
        for e in get_json(cluster, "events", "-n", namespace)["items"]
        if e["involvedObject"]["name"] == "steady" and e.get("reportingComponent") == "hearth-scaler"
    ]
    assert reasons.count("Activated") == 1 and "ScaledToZero" not in reasons, reasons
    assert lowest == 1
    wait_for("zero once the requests stop", lambda: replicas(cluster, namespace, "steady") == 0, timeout=60)
