"""The scaler: activation latency and reaction to a step, live on a local cluster; and the cost of a
24-hour demand trace, replayed through the same decision function in simulated time.

    .venv/bin/python bench/scaler.py [--cycles 5]

- activation: from sending the first request to a model at zero, to the scale write (seen by a watch on
  the Deployment, so an upper bound); and from the pod turning Ready (seen by a watch on pods) to the
  first token at the client.
- step: from a step in demand (0 -> 12 open streams, target 4) to spec.replicas == 3, in scaler ticks.
- cost: a day busy for 3 hours and idle otherwise; accelerator-hours used with Hearth's decisions versus
  always-on at max and at 1 replica, and the cold starts suffered (count and total duration).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devcluster.build import ensure_binaries
from devcluster.cluster import Cluster
from devcluster.layout import Layout, default_cache_dir
from devcluster.models import simulated_model
from policies import ScaleSpec
from scaler import Memory, Observation, decide

TICK = 1.0


def deployment(name: str, delay: str, startup: str) -> dict[str, Any]:
    return simulated_model("bench", name, max_replicas=3, target=4, delay=delay, startup=startup, itl="20ms")


class Watcher:
    """Records when (monotonic) the Deployment's replicas and its pods' readiness change, from watches."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(str(cluster.layout.kubeconfig))
        self.apps, self.core = client.AppsV1Api(api), client.CoreV1Api(api)
        self.name = name
        self.replicas: list[tuple[float, int]] = []
        self.ready: list[tuple[float, str]] = []
        self.stop = threading.Event()
        for target in (self._deployments, self._pods):
            threading.Thread(target=target, daemon=True).start()

    def _deployments(self) -> None:
        from kubernetes import watch

        for event in watch.Watch().stream(
            self.apps.list_namespaced_deployment,
            "bench",
            field_selector=f"metadata.name={self.name}",
            timeout_seconds=3600,
        ):
            now = time.monotonic()
            replicas = int(event["raw_object"]["spec"].get("replicas") or 0)
            if not self.replicas or self.replicas[-1][1] != replicas:
                self.replicas.append((now, replicas))
            if self.stop.is_set():
                return

    def _pods(self) -> None:
        from kubernetes import watch

        seen: set[str] = set()
        for event in watch.Watch().stream(
            self.core.list_namespaced_pod, "bench", label_selector=f"app={self.name}", timeout_seconds=3600
        ):
            now = time.monotonic()
            pod = event["raw_object"]
            ready = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (pod.get("status") or {}).get("conditions") or []
            )
            if ready and pod["metadata"]["uid"] not in seen:
                seen.add(pod["metadata"]["uid"])
                self.ready.append((now, pod["metadata"]["name"]))
            if self.stop.is_set():
                return

    def first_after(self, series: list[tuple[float, Any]], after: float, predicate: Any) -> float | None:
        for at, value in series:
            if at >= after and predicate(value):
                return at
        return None


def wait(what: str, probe: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def first_token(url: str, name: str, tokens: int = 4, key: str = "") -> float:
    request = {
        "model": f"bench/{name}",
        "stream": True,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": "hi"}],
    }
    first: float | None = None
    headers = {"Authorization": f"Bearer {key}"}
    timeout = httpx.Timeout(10, read=120)
    with httpx.stream("POST", f"{url}/chat/completions", json=request, headers=headers, timeout=timeout) as resp:
        for line in resp.iter_lines():  # read to the end; remember when the first token came
            if first is None and line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                first = time.monotonic()
    if first is not None:
        return first
    raise RuntimeError("no token")


def activation(cluster: Cluster, cycles: int) -> dict[str, list[float]]:
    name = "activation"
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(deployment(name, "1s", "1s")))
    watcher = Watcher(cluster, name)
    to_write, ready_to_token = [], []
    url = cluster.openai_base_url
    key = cluster.api_key("bench")
    for _ in range(cycles):
        wait("zero", lambda: bool(watcher.replicas) and watcher.replicas[-1][1] == 0 and not _pods(cluster, name))
        time.sleep(1.5)
        sent = time.monotonic()
        token_at = first_token(url, name, key=key)
        written = watcher.first_after(watcher.replicas, sent, lambda r: r >= 1)
        ready = watcher.first_after(watcher.ready, sent, lambda _: True)
        if written is None or ready is None:
            raise RuntimeError("the watches missed the activation")
        to_write.append(1000 * (written - sent))
        ready_to_token.append(1000 * (token_at - ready))
    watcher.stop.set()
    return {"request_to_scale_write_ms": to_write, "pod_ready_to_first_token_ms": ready_to_token}


def _pods(cluster: Cluster, name: str) -> bool:
    return bool(cluster.kubectl("get", "pods", "-n", "bench", "-l", f"app={name}", "-o", "name").stdout.strip())


def step(cluster: Cluster) -> dict[str, float]:
    name = "step"
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(deployment(name, "10m", "1s")))
    watcher = Watcher(cluster, name)
    key = cluster.api_key("bench")
    first_token(cluster.openai_base_url, name, key=key)  # at one replica now
    wait("one ready pod", lambda: len(watcher.ready) >= 1)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:  # 12 streams of ~5 s: demand 12, target 4 -> 3
        futures = [pool.submit(first_token, cluster.openai_base_url, name, 250, key) for _ in range(12)]
        wait("three replicas", lambda: watcher.replicas[-1][1] == 3, timeout=30)
        reached = watcher.first_after(watcher.replicas, started, lambda r: r == 3) or time.monotonic()
        for future in futures:
            future.result()
    watcher.stop.set()
    return {"seconds": reached - started, "ticks": (reached - started) / TICK}


def day_trace(seed: int = 1) -> list[tuple[float, int]]:
    """Demand every 10 s over 24 h: busy from 09:00 to 12:00 (5-30 requests waiting or in flight,
    following a smooth curve with noise), idle otherwise."""
    rng = random.Random(seed)
    trace = []
    for t in range(0, 24 * 3600, 10):
        hour = t / 3600
        if 9 <= hour < 12:
            level = 5 + 25 * math.sin(math.pi * (hour - 9) / 3)
            trace.append((float(t), max(1, int(rng.gauss(level, 3)))))
        else:
            trace.append((float(t), 0))
    return trace


def cost(spec: ScaleSpec, load_seconds: float, windowed: bool = True) -> dict[str, float]:
    """Replay the trace through the decision function; a new replica costs accelerator time from its scale
    write, and serves only after `load_seconds`. `windowed`: each tick also gets the concurrency integrated
    since the previous one (the trace's level held over the interval), as the front doors now report it."""
    trace = day_trace()
    replicas, memory, gpu_seconds, previous = 0, Memory(), 0.0, (0.0, 0)
    cold_starts, cold_seconds, waiting_since = 0, 0.0, None
    serving_from: list[float] = []
    for (now, demand), (nxt, _) in zip(trace, [*trace[1:], (24 * 3600.0, 0)], strict=True):
        interval = now - previous[0] if windowed else 0.0
        seen = Observation(demand=demand, busy_seconds=previous[1] * interval, interval=interval)
        decision = decide(spec, replicas, seen, now, memory)
        previous = (now, demand)
        if decision.replicas > replicas:
            if replicas == 0:
                cold_starts += 1
                waiting_since = now
            serving_from.extend([now + load_seconds] * (decision.replicas - replicas))
        elif decision.replicas < replicas:
            serving_from = serving_from[: decision.replicas]
        replicas, memory = decision.replicas, decision.memory
        if waiting_since is not None and any(s <= nxt for s in serving_from):
            cold_seconds += min(s for s in serving_from) - waiting_since
            waiting_since = None
        gpu_seconds += replicas * (nxt - now)
    return {
        "hearth_gpu_hours": gpu_seconds / 3600,
        "always_on_max_gpu_hours": spec.max_replicas * 24.0,
        "always_on_one_gpu_hours": 24.0,
        "cold_starts": cold_starts,
        "cold_start_seconds": cold_seconds,
    }


def steady(spec: ScaleSpec, count_starts: bool, hours: float = 1.0, load_seconds: float = 8.0) -> dict[str, float]:
    """Steady short traffic in simulated time: a 100 ms request every 3 s, scaler ticks every second (half
    a second out of phase with the requests, so a tick never sees one in flight unless it was held).
    `count_starts` passes the front doors' count of requests started since the previous tick to the
    decision, as the scaler now does; without it the decision sees only what is in flight at each tick,
    as before. A request that arrives at zero replicas is a cold start: held until a replica has loaded."""
    replicas, memory = 0, Memory()
    cold_starts, requests, ready_at = 0, 0, None
    held: list[float] = []
    last_tick = 0.0
    end = hours * 3600
    arrivals = [3.0 * i for i in range(int(end / 3))]
    next_arrival = 0
    tick = 0.5
    while tick < end:
        started = 0
        while next_arrival < len(arrivals) and arrivals[next_arrival] <= tick:
            requests += 1
            started += 1
            if replicas == 0 or (ready_at is not None and arrivals[next_arrival] < ready_at):
                held.append(arrivals[next_arrival])
                cold_starts += 1 if replicas == 0 and not held[:-1] else 0
            next_arrival += 1
        if ready_at is not None and tick >= ready_at:
            held, ready_at = [], None  # served at once when the replica is ready
        # Counted: requests started since the last tick, and their 100 ms each of concurrency.
        observation = Observation(
            demand=len(held),
            started=started if count_starts else 0,
            busy_seconds=0.1 * started if count_starts else 0.0,
            interval=TICK if count_starts else 0.0,
        )
        decision = decide(spec, replicas, observation, tick, memory)
        if replicas == 0 and decision.replicas > 0:
            ready_at = tick + load_seconds
        replicas, memory = decision.replicas, decision.memory
        last_tick = tick
        tick += TICK
    return {"requests": requests, "cold_starts": cold_starts, "per_hour": cold_starts / hours, "until": last_tick}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    spec = ScaleSpec(min_replicas=0, max_replicas=3, target=10, scale_down_delay=300)
    day = cost(spec, load_seconds=90)
    sampled = cost(spec, load_seconds=90, windowed=False)
    print("24-hour trace (busy 09:00-12:00, demand 5-30; max 3, target 10, scale-down-delay 5m, 90 s load):")
    print(
        f"  accelerator-hours: Hearth {day['hearth_gpu_hours']:.2f}, always-on at max "
        f"{day['always_on_max_gpu_hours']:.0f}, always-on at 1 replica {day['always_on_one_gpu_hours']:.0f}"
    )
    print(f"  cold starts: {day['cold_starts']:.0f}, {day['cold_start_seconds']:.0f} s waited in all")
    print(
        f"  with the windowed level {day['hearth_gpu_hours']:.2f} accelerator-hours, with demand sampled at each "
        f"tick only (the first wave) {sampled['hearth_gpu_hours']:.2f}: "
        f"{100 * (day['hearth_gpu_hours'] / sampled['hearth_gpu_hours'] - 1):+.1f}%"
    )
    short = ScaleSpec(min_replicas=0, max_replicas=3, target=10, scale_down_delay=10)
    before, after = steady(short, count_starts=False), steady(short, count_starts=True)
    print("steady short traffic (a 100 ms request every 3 s, 1 h, scale-down-delay 10 s, 8 s load):")
    print(
        f"  cold starts per hour: {before['per_hour']:.0f} seeing only what is in flight at each tick, "
        f"{after['per_hour']:.0f} counting the requests started between ticks ({after['requests']:.0f} requests)"
    )
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster(Layout(state=Path(state), port_base=46400, pod_net=40), ensure_binaries(default_cache_dir()))
        cluster.up()
        try:
            cluster.kubectl("create", "namespace", "bench")
            live = activation(cluster, args.cycles)
            reaction = step(cluster)
        finally:
            cluster.down()
    for name, values in live.items():
        each = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name}: median {statistics.median(values):.0f} ms, max {max(values):.0f} ms ({each})")
    print(
        f"step 0 -> 12 streams (target 4): 3 replicas after {reaction['seconds']:.2f} s "
        f"= {reaction['ticks']:.1f} ticks of {TICK:g} s"
    )


if __name__ == "__main__":
    main()
