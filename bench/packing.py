"""Many models on few accelerators: a day of requests to 10 models sharing 4 GPUs, replayed in simulated
time through the scaler's own decision (scaler.decision.decide) and, with packing, its own choice of
replicas to retire (scaler.packing.plan), against the same day without packing.

    .venv/bin/python bench/packing.py [--seed 1] [--days 1] [--live 2]

Each model is one replica of one GPU at most; a request is served by a ready replica (up to 8 at once),
otherwise it waits (held, as the front door holds it) until one is, or fails at its activation timeout.
A replica costs its GPU from the moment it is placed (loading included) until it is removed. Printed per
policy: GPU-hours held, cold starts, requests served and failed, the delay requests waited (p50, p99 and
worst), and the delay of requests that arrived at a model at zero while every GPU was held ("into a full
pool").

With `--live N`, also on a local cluster of its own (real scheduler, kubelets and Hearth from its
manifests): a pool of 2 accelerators held by two idle models (scale-down-delay 2m), and the time to first
token of a third model's first request, N times with making room and N times without
(`--swaps-per-minute=0`, where it waits for an idle model's scale-down delay).
"""

from __future__ import annotations

import argparse
import calendar
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import openai
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devcluster.build import ensure_binaries
from devcluster.cluster import Cluster
from devcluster.layout import Layout, default_cache_dir
from devcluster.pools import AcceleratorPool
from policies import Capacity, Holding, NodeRoom, ScaleSpec
from scaler import Candidate, Memory, Observation, Rules, Waiter, decide, plan, wanted

GPU = "nvidia.com/gpu"
GPUS = 4
STEP = 1.0  # seconds of simulated time per tick (the scaler's tick)
LOAD = 60.0  # seconds from placement to ready: a 16 GB model read at ~300 MB/s, plus the engine's start
SERVICE = 12.0  # seconds a request is in flight (a few hundred tokens)
PER_REPLICA = 8
TIMEOUT = 600.0  # the activation timeout
SPEC = ScaleSpec(min_replicas=0, max_replicas=1, target=PER_REPLICA, scale_down_delay=300.0)
RULES = Rules(grace=30.0, residency=120.0, swaps_per_minute=6)


def office(hour: float) -> float:
    return 0.03 if 9 <= hour < 18 and not 12 <= hour < 13 else 0.0005


def coding(hour: float) -> float:
    return 0.05 if 10 <= hour < 12 or 14 <= hour < 17 else 0.0


def nightly(hour: float) -> float:
    return 0.15 if 1 <= hour < 3 else 0.0


def rare(hour: float) -> float:
    return 1 / 5400 if 8 <= hour < 20 else 0.0


def steady(hour: float) -> float:
    return 0.004


PATTERNS = {
    "chat-a": office,
    "chat-b": office,
    "code-a": coding,
    "code-b": coding,
    "batch": nightly,
    "rare-a": rare,
    "rare-b": rare,
    "rare-c": rare,
    "api-a": steady,
    "api-b": steady,
}


def arrivals(seed: int, days: int) -> list[tuple[float, str]]:
    """(time, model) of every request: Poisson arrivals at each model's rate for the hour of day."""
    rng = random.Random(seed)
    found = []
    for model, rate in PATTERNS.items():
        t = 0.0
        while t < days * 86400:
            r = rate((t % 86400) / 3600)
            if r <= 0:
                t = (math.floor(t / 900) + 1) * 900  # skip to the next quarter hour
                continue
            t += rng.expovariate(r)
            if rate((t % 86400) / 3600) > 0 and t < days * 86400:
                found.append((t, model))
    return sorted(found)


@dataclass
class Replica:
    placed: float | None = None  # None: pending (no GPU yet)
    created: float = 0.0
    in_flight: list[float] = field(default_factory=list)  # end times

    def ready(self, now: float) -> bool:
        return self.placed is not None and now >= self.placed + LOAD


@dataclass
class Model:
    name: str
    held: list[float] = field(default_factory=list)  # arrival times
    replicas: list[Replica] = field(default_factory=list)
    memory: Memory = field(default_factory=Memory)
    last_used: float = 0.0
    started_since_tick: int = 0
    cold_starts: int = 0


@dataclass
class Result:
    gpu_seconds: float = 0.0
    cold_starts: int = 0
    served: int = 0
    failed: int = 0
    waits: list[float] = field(default_factory=list)
    into_full_pool: list[float] = field(default_factory=list)
    retirements: int = 0


def simulate(packing: bool, seed: int, days: int) -> Result:
    requests = arrivals(seed, days)
    models = {name: Model(name) for name in PATTERNS}
    result = Result()
    full_pool_arrivals: set[tuple[str, float]] = set()
    index, now, end = 0, 0.0, days * 86400.0
    while now < end:
        placed = sum(1 for m in models.values() for r in m.replicas if r.placed is not None)
        while index < len(requests) and requests[index][0] <= now:
            at, name = requests[index]
            model = models[name]
            if not model.replicas and placed >= GPUS:
                full_pool_arrivals.add((name, at))
            model.held.append(at)
            model.started_since_tick += 1
            index += 1
        for model in models.values():
            _serve(model, now, result, full_pool_arrivals)
        for model in models.values():
            _decide(model, now)
        _place(models, now)
        if packing:
            result.retirements += _make_room(models, now)
        result.gpu_seconds += STEP * sum(1 for m in models.values() for r in m.replicas if r.placed is not None)
        now += STEP
    result.cold_starts = sum(m.cold_starts for m in models.values())
    return result


def _serve(model: Model, now: float, result: Result, full_pool: set[tuple[str, float]]) -> None:
    for replica in model.replicas:
        replica.in_flight = [e for e in replica.in_flight if e > now]
    ready = [r for r in model.replicas if r.ready(now)]
    for at in list(model.held):
        if now - at > TIMEOUT:
            model.held.remove(at)
            result.failed += 1
            continue
        free = [r for r in ready if len(r.in_flight) < PER_REPLICA]
        if not free:
            break
        model.held.remove(at)
        free[0].in_flight.append(now + SERVICE)
        result.served += 1
        result.waits.append(now - at)
        if (model.name, at) in full_pool:
            result.into_full_pool.append(now - at)
    if model.held or any(r.in_flight for r in model.replicas) or model.started_since_tick:
        model.last_used = now


def _decide(model: Model, now: float) -> None:
    in_flight = sum(len(r.in_flight) for r in model.replicas)
    demand = len(model.held) + in_flight
    seen = Observation(
        demand=demand,
        busy_pods=sum(1 for r in model.replicas if r.in_flight),
        started=model.started_since_tick,
        busy_seconds=demand * STEP,
        interval=STEP,
    )
    model.started_since_tick = 0
    decision = decide(SPEC, len(model.replicas), seen, now, model.memory)
    model.memory = decision.memory
    while len(model.replicas) < decision.replicas:
        model.replicas.append(Replica(created=now))
    while len(model.replicas) > decision.replicas:
        idle = sorted(model.replicas, key=lambda r: (r.placed is not None, len(r.in_flight)))
        model.replicas.remove(idle[0])


def _place(models: dict[str, Model], now: float) -> None:
    """The scheduler: pending replicas, oldest first, onto free GPUs."""
    free = GPUS - sum(1 for m in models.values() for r in m.replicas if r.placed is not None)
    pending = sorted(
        (r.created, m.name, i) for m in models.values() for i, r in enumerate(m.replicas) if r.placed is None
    )
    for _, name, i in pending[: max(0, free)]:
        models[name].replicas[i].placed = now
        models[name].cold_starts += 1


def _make_room(models: dict[str, Model], now: float) -> int:
    holders = [
        Holding(f"{m.name}/{i}", "gpu", {GPU: 1}, False, m.name)
        for m in models.values()
        for i, r in enumerate(m.replicas)
        if r.placed is not None
    ]
    view = Capacity(
        nodes={"gpu": NodeRoom("gpu", {}, (), True, {GPU: GPUS})},
        taken={("gpu", GPU): len(holders)},
        holders={("gpu", GPU): holders},
    )
    waiting = [
        Waiter(f"{m.name}/{i}", m.name, 0, {GPU: 1}, {})
        for m in models.values()
        for i, r in enumerate(m.replicas)
        if r.placed is None
    ]
    if not waiting:
        return 0
    found = []
    for m in models.values():
        spare = 0 if m.held else len(m.replicas) - max(SPEC.min_replicas, wanted(SPEC, 0))
        for i, r in enumerate(m.replicas):
            if r.ready(now) and not r.in_flight and spare > 0:
                assert r.placed is not None
                found.append(
                    Candidate(f"{m.name}/{i}", m.name, "gpu", {GPU: 1}, 0, now - m.last_used, now - r.placed, spare)
                )
    decided = plan(view, waiting, found, RULES, {})
    for retire in decided.retire:
        victim = models[retire.victim.model]
        victim.replicas.pop(int(retire.victim.pod.split("/")[1]))
        victim.memory = Memory()
    return len(decided.retire)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def first_token(cluster: Cluster, namespace: str, name: str) -> float:
    """Seconds from sending a streamed request to its first token."""
    client = openai.OpenAI(base_url=cluster.openai_base_url, api_key=cluster.api_key(namespace), timeout=600)
    started = time.monotonic()
    chunks = client.chat.completions.create(
        model=f"{namespace}/{name}", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=3
    )
    took = None
    for chunk in chunks:
        if took is None and chunk.choices and chunk.choices[0].delta.content:
            took = time.monotonic() - started
    if took is None:
        raise RuntimeError("no token")
    return took


def into_full_pool(cluster: Cluster, label: str, round_: int) -> float:
    namespace = f"bench-{label}-{round_}"
    cluster.kubectl("create", "namespace", namespace)
    with AcceleratorPool(cluster, f"bench{label}{round_}", 2) as pool:
        for name in ("a", "b", "c"):
            cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pool.model(namespace, name, delay="2m")))
        first_token(cluster, namespace, "a")
        first_token(cluster, namespace, "b")
        pods = cluster.pods(namespace, "app=b")
        started = max(calendar.timegm(time.strptime(p["status"]["startTime"], "%Y-%m-%dT%H:%M:%SZ")) for p in pods)
        time.sleep(max(0.0, 11 - (time.time() - started)))  # the dev cluster's minimum residency, 10 s
        took = first_token(cluster, namespace, "c")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    return took


def live(rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster(Layout(state=Path(state), port_base=46400, pod_net=40), ensure_binaries(default_cache_dir()))
        cluster.up()
        try:
            results["making room"] = [into_full_pool(cluster, "room", r) for r in range(rounds)]
            off = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--swaps-per-minute=0"}]
            cluster.kubectl(
                "patch", "deployment", "hearth-scaler", "-n", "hearth-system", "--type=json", "-p", yaml.safe_dump(off)
            )
            cluster.kubectl("rollout", "status", "deployment/hearth-scaler", "-n", "hearth-system", "--timeout=180s")
            time.sleep(20)  # the new leader takes the Lease
            results["without (waits for the scale-down delay, 2m)"] = [
                into_full_pool(cluster, "off", r) for r in range(rounds)
            ]
        finally:
            cluster.down()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--live", type=int, default=0, metavar="N", help="also measure live, N rounds each way")
    args = parser.parse_args()
    print(f"{len(PATTERNS)} models, {GPUS} GPUs, load {LOAD:g}s, scale-down-delay {SPEC.scale_down_delay:g}s, "
          f"{len(arrivals(args.seed, args.days))} requests over {args.days} day(s), seed {args.seed}")  # fmt: skip
    header = "| policy | GPU-hours | cold starts | retirements | served | failed | wait p50 s | p99 s | worst s |"
    print(header + " into a full pool: n, median s, worst s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for packing in (False, True):
        r = simulate(packing, args.seed, args.days)
        full = r.into_full_pool
        into = f"{len(full)}, {statistics.median(full):.0f}, {max(full):.0f}" if full else "0, -, -"
        print(
            f"| {'packing' if packing else 'no packing'} | {r.gpu_seconds / 3600:.1f} | {r.cold_starts} | "
            f"{r.retirements} | {r.served} | {r.failed} | {percentile(r.waits, 0.5):.0f} | "
            f"{percentile(r.waits, 0.99):.0f} | {max(r.waits, default=0):.0f} | {into} |"
        )
    if args.live:
        print("\nlive: time to first token of a model waking into a full pool (2 accelerators, 2 idle models):")
        for policy, values in live(args.live).items():
            print(f"  {policy}: median {statistics.median(values):.1f}s ({', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
