"""A chaos soak on the local cluster: models cycling 0 -> 1 -> N -> 0 under OpenAI SDK clients (streaming
and not, bursts), while a seeded schedule injects faults at random moments. It ends by itself and prints
what happened to every request, how long each kind of fault took to recover from, the peak memory of
Hearth's components, whether every in-flight and held count came back to zero, and the Warning Events.

    .venv/bin/python bench/soak.py [--cycles 100] [--seed N] [--models 3] [--every 20] [--faults a,b]

A request is *answered* when its text is exactly what the simulator says for its `max_tokens` (the
simulator's words are deterministic); *failed* when the SDK raised an OpenAI error (counted by status and
code; a connection error the SDK gave up on is `connection`); *lost* when it hung past its deadline, ended
without an error but cut short, or came back longer than asked (answered twice). The SDK keeps its default
two retries. The seed is printed first: the same seed replays the same schedule of faults and traffic.

Fault kinds (`--faults` picks some; all by default): SIGKILL of each Hearth component's process (webhook,
front door, scaler, node agent) and of a model pod's sidecar; deletion of a Hearth pod; SIGKILL of a
model's runtime mid-stream; a restart of kube-apiserver and of etcd; the apiserver away for 30-60 s; a
drain of a node (uncordoned after); a rolling upgrade of Hearth (its Deployments and DaemonSet) to a new
image tag of the same code, as `kubectl apply -k` of a changed overlay would roll it.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devcluster.build import ensure_binaries
from devcluster.chaos import FAULTS, Soak, gauges
from devcluster.cluster import Cluster
from devcluster.layout import Layout, default_cache_dir
from devcluster.models import simulated_model

NAMESPACE = "soak"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=100, help="0 -> N -> 0 cycles in all, over the models")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--every", type=float, default=20.0, help="mean seconds between faults")
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULTS)}")
    print(f"seed {seed} (replay: --seed {seed}); faults every {args.every:g}s on average: {', '.join(faults)}")
    models = [f"m{i}" for i in range(args.models)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped early: the cluster still goes down
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster(Layout(state=Path(state), port_base=56400, pod_net=50), ensure_binaries(default_cache_dir()))
        cluster.up()
        try:
            cluster.kubectl("create", "namespace", NAMESPACE)
            for name in models:
                model = simulated_model(NAMESPACE, name, max_replicas=3, target=2, delay="3s", startup="2s", itl="20ms")
                cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(model))
            soak = Soak(cluster, NAMESPACE, models, seed, args.every, faults, verbose=True)
            soak.run(args.cycles)
            report(soak, cluster, seed)
        finally:
            cluster.down()


def report(soak: Soak, cluster: Cluster, seed: int) -> None:
    tally = soak.tally
    minutes = (time.monotonic() - soak.started) / 60
    print(f"\nseed {seed}; {sum(soak.cycles.values())} cycles in {minutes:.1f} min; {len(soak.schedule)} faults")
    failed, lost = sum(tally.failed.values()), sum(tally.lost.values())
    print(f"requests sent {tally.sent}, answered {tally.answered}, failed {failed}, lost {lost}")
    for detail, count in sorted(tally.failed.items()):
        print(f"  failed  {detail:<40} {count}")
        if detail in tally.examples:
            print(f"          the first said: {tally.examples[detail]}")
    for detail, count in sorted(tally.lost.items()):
        print(f"  lost    {detail:<40} {count}")
    print("recovery after each fault kind (Hearth's components and the models' pods ready again), s:")
    for kind, times in sorted(soak.recoveries.items()):
        print(f"  {kind:<18} n={len(times):<3} p50 {statistics.median(times):6.1f}  max {max(times):6.1f}")
    for kind, count in sorted(soak.unseen.items()):
        print(f"  {kind:<18} n={count:<3} made nothing unready (within 15 s)")
    for kind, count in sorted(soak.unrecovered.items()):
        print(f"  {kind:<18} n={count:<3} NOT recovered within 300 s")
    print("requests open when each fault kind struck, by how they ended:")
    for kind, ended in sorted(soak.open_at_faults().items()):
        print(f"  {kind:<18} " + (", ".join(f"{outcome} {n}" for outcome, n in sorted(ended.items())) or "none open"))
    print("peak RSS, MiB: " + ", ".join(f"{c} {mib:.0f}" for c, mib in sorted(soak.rss.items())))
    print("front door gauges at the end: " + ", ".join(f"{k} {v:g}" for k, v in gauges(cluster).items()))
    events = cluster.get_json("events", "-A", "--field-selector", "type=Warning")["items"]
    reasons = collections.Counter(f"{e['involvedObject']['kind']}/{e['reason']}" for e in events)
    print("Warning Events: " + (", ".join(f"{r} {n}" for r, n in reasons.most_common()) or "none"))
    print("schedule: " + "; ".join(f"{at:.0f}s {kind} {target}" for at, kind, target in soak.schedule))


if __name__ == "__main__":
    main()
