"""Many models, few accelerators, on the real cluster: a waking model makes room by retiring idle ones.

Each test gets pools of its own (devcluster.pools: an extended resource advertised on a node for this test
only, and an InferenceRuntime that asks for it), so the other tests' models neither fill them nor yield to
them. The dev cluster's scaler makes room after 3 s of idleness and 5 s of residency, and falls back to
another vendor after 5 s (devcluster.cluster.DEV_ROOM_ARGS)."""

from __future__ import annotations

import calendar
import concurrent.futures
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.pools import AcceleratorPool, resident_model
from tests.e2e.conftest import (
    MESSAGES,
    apply,
    expected,
    get_json,
    ready_pods,
    replicas,
    sdk,
    wait_for,
)

pytestmark = pytest.mark.e2e
NODE = "gpu-node-0"
RESIDENCY = 5.0  # DEV_ROOM_ARGS


@pytest.fixture
def pool(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[AcceleratorPool]:
    tag = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    with AcceleratorPool(cluster, tag, int(getattr(request, "param", 2))) as made:
        yield made


def ask(cluster: Cluster, namespace: str, name: str, tokens: int = 3) -> str:
    answer = sdk(cluster, namespace, timeout=150).chat.completions.create(
        model=f"{namespace}/{name}", messages=MESSAGES, max_tokens=tokens
    )
    return answer.choices[0].message.content or ""


def events(cluster: Cluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    listed = get_json(cluster, "events", "-n", namespace, "--field-selector", f"reason={reason}")["items"]
    return sorted(listed, key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")


def resident(cluster: Cluster, namespace: str, name: str) -> None:
    """Wait until the model's pod has been up for the minimum residency (and its request is over)."""
    pods = cluster.pods(namespace, f"app={name}")
    started = min(calendar.timegm(time.strptime(p["status"]["startTime"], "%Y-%m-%dT%H:%M:%SZ")) for p in pods)
    time.sleep(max(0.0, RESIDENCY + 1 - (time.time() - started)))


def test_a_model_waking_into_a_full_pool_retires_the_least_recently_used_idle_one(
    cluster: Cluster, namespace: str, pool: AcceleratorPool
) -> None:
    for name in ("a", "b", "c"):
        apply(cluster, pool.model(namespace, name))
    assert ask(cluster, namespace, "a") == expected(3)
    assert ask(cluster, namespace, "b") == expected(3)  # the pool is full: a and b idle inside their 10m delay
    resident(cluster, namespace, "b")

    started = time.monotonic()
    assert ask(cluster, namespace, "c") == expected(3)
    into_full_pool = time.monotonic() - started
    print(f"\n  first token of a model waking into a full pool: {into_full_pool:.1f}s (one retire + one cold start)")
    assert (replicas(cluster, namespace, "a"), replicas(cluster, namespace, "b")) == (0, 1)  # a: least recently used
    yielded = [e["message"] for e in events(cluster, namespace, "Yielded")]
    made = [e["message"] for e in events(cluster, namespace, "MadeRoom")]
    assert len(yielded) == 1 and yielded[0].startswith(f"Yielded 1 {pool.resource} on {NODE} to {namespace}/c:")
    assert len(made) == 1 and made[0].startswith(f"Made room on {NODE}: retired 1 replica of {namespace}/a, idle ")

    # a wants its accelerator back: b is now the least recently used, and yields; no storm after that.
    resident(cluster, namespace, "c")
    assert ask(cluster, namespace, "a") == expected(3)
    assert (replicas(cluster, namespace, "b"), replicas(cluster, namespace, "c")) == (0, 1)
    time.sleep(5)  # a few more ticks: nothing else moves
    assert len(events(cluster, namespace, "Yielded")) == 2
    assert [replicas(cluster, namespace, n) for n in ("a", "b", "c")] == [1, 0, 1]


@pytest.mark.parametrize("pool", [1], indirect=True)
def test_a_model_with_an_open_stream_is_never_retired_and_the_waiting_request_is_served_after(
    cluster: Cluster, namespace: str, pool: AcceleratorPool
) -> None:
    apply(cluster, pool.model(namespace, "busy", itl="20ms"))
    apply(cluster, pool.model(namespace, "waiting", annotations={"hearth.dev/activation-timeout": "2m"}))
    assert ask(cluster, namespace, "busy") == expected(3)
    resident(cluster, namespace, "busy")
    tokens = 1000  # 20 s of streaming

    def stream() -> tuple[str, float]:
        chunks = sdk(cluster, namespace, timeout=150).chat.completions.create(
            model=f"{namespace}/busy", messages=MESSAGES, stream=True, max_tokens=tokens
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(2) as workers:
        streaming = workers.submit(stream)
        time.sleep(2)
        waiting = workers.submit(lambda: (ask(cluster, namespace, "waiting"), time.monotonic()))
        wait_for(
            "the waiting pod to be reported",
            lambda: events(cluster, namespace, "WaitingForAccelerators"),
            timeout=15,
        )
        assert replicas(cluster, namespace, "busy") == 1  # the stream is open: busy is not retired
        text, stream_ended = streaming.result(timeout=120)
        answer, answered = waiting.result(timeout=150)
    assert text == expected(tokens), "the open stream was cut"
    assert answer == expected(3) and answered > stream_ended
    assert replicas(cluster, namespace, "busy") == 0
    message = events(cluster, namespace, "WaitingForAccelerators")[0]["message"]
    assert f"no node has 1 {pool.resource} free and nothing can be retired" in message, message


def runtime_of(cluster: Cluster, namespace: str, name: str) -> set[str]:
    return {p["metadata"]["labels"]["hearth.dev/runtime"] for p in cluster.pods(namespace, f"app={name}")}


def test_a_model_listing_two_vendors_goes_where_there_is_room_and_is_moved_when_room_opens(
    cluster: Cluster, namespace: str, request: pytest.FixtureRequest
) -> None:
    tag = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]
    first, second = f"first{tag}", f"second{tag}"
    with (
        AcceleratorPool(cluster, f"{tag}a", 1, vendor=first) as gpus,
        AcceleratorPool(cluster, f"{tag}b", 2, node="ascend-node-0", base="sim-ascend", vendor=second) as npus,
    ):
        # Both pools full of models that never yield (min-replicas 1): the waking model is rendered for its
        # first vendor, waits, and is said to wait.
        pinned = {"hearth.dev/min-replicas": "1"}
        apply(cluster, resident_model(namespace, "holds-gpu", runtime=gpus.runtime, annotations=pinned))
        apply(cluster, resident_model(namespace, "holds-npu-0", runtime=npus.runtime, annotations=pinned))
        apply(cluster, resident_model(namespace, "holds-npu-1", runtime=npus.runtime, annotations=pinned))
        for name in ("holds-gpu", "holds-npu-0", "holds-npu-1"):
            wait_for(f"{name} to run", lambda n=name: ready_pods(cluster, namespace, n), timeout=90)  # type: ignore[misc]
        timeout = {"hearth.dev/activation-timeout": "2m"}
        apply(cluster, resident_model(namespace, "either", vendors=f"{first},{second}", annotations=timeout))
        with concurrent.futures.ThreadPoolExecutor(1) as worker:
            answer = worker.submit(lambda: ask(cluster, namespace, "either"))
            wait_for("the pod to wait", lambda: events(cluster, namespace, "WaitingForAccelerators"), timeout=30)
            assert runtime_of(cluster, namespace, "either") == {gpus.runtime}
            cluster.kubectl("delete", "deployment", "holds-npu-1", "-n", namespace)  # room opens on the other vendor
            assert answer.result(timeout=150) == expected(3)
        moved = [e["message"] for e in events(cluster, namespace, "VendorFallback")]
        assert len(moved) == 1 and f"replaced, for runtime {npus.runtime} ({second}), which has room" in moved[0]
        assert runtime_of(cluster, namespace, "either") == {npus.runtime}

        # The second vendor has room now (holds-npu-1 left): a model waking while the first is full is rendered
        # for it at once, without waiting.
        cluster.kubectl("delete", "deployment", "holds-npu-0", "-n", namespace)
        wait_for("holds-npu-0 to go", lambda: not cluster.pods(namespace, "app=holds-npu-0"), timeout=60)
        apply(cluster, resident_model(namespace, "later", vendors=f"{first},{second}"))
        started = time.monotonic()
        assert ask(cluster, namespace, "later") == expected(3)
        took = time.monotonic() - started
        print(f"\n  a two-vendor model woken while its first vendor is full: answered in {took:.1f}s")
        assert runtime_of(cluster, namespace, "later") == {npus.runtime}
        assert len(events(cluster, namespace, "VendorFallback")) == 1


def test_the_scalers_see_the_priority_ceilings_admins_set_on_namespaces(cluster: Cluster, namespace: str) -> None:
    """The namespace watch (label selector, the scaler's RBAC) reaches every scaler replica; what a ceiling
    does to making room is tests/test_room.py's."""
    cluster.kubectl("label", "namespace", namespace, "hearth.dev/max-priority=7")

    def seen() -> bool | None:
        logs = [
            cluster.kubectl("logs", "-n", "hearth-system", p["metadata"]["name"], "--tail=-1").stdout
            for p in cluster.hearth_pods("hearth-scaler")
        ]
        return all(f"'{namespace}': 7" in log for log in logs) or None

    wait_for("every scaler to know the ceiling", seen, timeout=30)
