"""Many models, few accelerators, on the real cluster: a waking model makes room by retiring idle ones.

Each test gets a pool of its own: an extended resource advertised on gpu-node-0 for this test only, and an
InferenceRuntime (a copy of sim-nvidia) that asks for it, so the other tests' models neither fill it nor
yield to it. The dev cluster's scaler makes room after 3 s of idleness and 10 s of residency
(devcluster.cluster.DEV_ROOM_ARGS)."""

from __future__ import annotations

import calendar
import concurrent.futures
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.models import simulated_model
from tests.e2e.conftest import MESSAGES, apply, expected, get_json, replicas, sdk, wait_for, webhook_runtimes

pytestmark = pytest.mark.e2e
NODE = "gpu-node-0"
RESIDENCY = 10.0  # DEV_ROOM_ARGS


class Pool:
    def __init__(self, cluster: Cluster, tag: str, size: int) -> None:
        self.cluster = cluster
        self.resource = f"packing.test.hearth.dev/{tag}"
        self.runtime = f"pack-{tag}"
        self.size = size

    def _node_patch(self, op: str) -> None:
        escaped = self.resource.replace("/", "~1")
        ops = [{"op": op, "path": f"/status/{field}/{escaped}"} for field in ("capacity", "allocatable")]
        if op == "add":
            ops = [o | {"value": str(self.size)} for o in ops]
        self.cluster.kubectl("patch", "node", NODE, "--subresource=status", "--type=json", "-p", yaml.safe_dump(ops))

    def __enter__(self) -> Pool:
        self._node_patch("add")
        docs = list(yaml.safe_load_all(self.cluster.dev_runtimes(self.cluster.image)))
        runtime = next(d for d in docs if d and d["metadata"]["name"] == "sim-nvidia")
        runtime["metadata"]["name"] = self.runtime
        runtime["spec"]["accelerator"]["resource"] = self.resource
        apply(self.cluster, runtime)
        wait_for(
            "every webhook to know the pool's runtime",
            lambda: all(self.runtime in known for known in webhook_runtimes(self.cluster)),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.kubectl("delete", "inferenceruntime", self.runtime, "--wait=false", check=False)
        self._node_patch("remove")

    def model(self, namespace: str, name: str, **options: Any) -> dict[str, Any]:
        """A simulated model on this pool that stays up for 10 minutes once woken (it yields, or nothing)."""
        deployment = simulated_model(namespace, name, delay="10m", startup="1s", **options)
        deployment["spec"]["template"]["metadata"]["annotations"]["hearth.dev/runtime"] = self.runtime
        return deployment


@pytest.fixture
def pool(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Pool]:
    tag = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    with Pool(cluster, tag, int(getattr(request, "param", 2))) as made:
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
    cluster: Cluster, namespace: str, pool: Pool
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
    cluster: Cluster, namespace: str, pool: Pool
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
