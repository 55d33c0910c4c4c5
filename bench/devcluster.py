"""The local cluster: `hearth dev up` on a warm cache, the memory of the whole cluster (control plane,
node daemons, Hearth's six pods, and three model pods), and the webhook's added latency on a real
`kubectl apply`, from the apiserver's own admission metrics.

    .venv/bin/python bench/devcluster.py        (uses its own state folder and ports; builds if needed)
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devcluster.build import ensure_binaries
from devcluster.cluster import Cluster
from devcluster.layout import Layout, default_cache_dir
from devcluster.models import simulated_model
from devcluster.processes import rss_mib


def webhook_latency(cluster: Cluster) -> dict[str, dict[str, float]]:
    """Mean admission time per Hearth webhook, from apiserver_admission_webhook_admission_duration_seconds."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    totals: dict[str, dict[str, float]] = {}
    pattern = re.compile(r"^apiserver_admission_webhook_admission_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match or "hearth.dev" not in match.group(2):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        key = f"{labels.get('type')} {labels.get('name')} {labels.get('operation')}"
        entry = totals.setdefault(key, {"sum": 0.0, "count": 0.0})
        entry[match.group(1)] += float(match.group(3))
    return {k: {"count": v["count"], "mean_ms": 1000 * v["sum"] / v["count"]} for k, v in totals.items() if v["count"]}


def main() -> None:
    binaries = ensure_binaries(default_cache_dir())
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster(Layout(state=Path(state), port_base=36400, pod_net=30), binaries)
        started = time.monotonic()
        cluster.up()
        up_seconds = time.monotonic() - started
        time.sleep(10)  # let start-up settle (imports, first syncs) before measuring idle memory
        idle_rss = rss_mib(sorted(cluster.all_pids()))
        deployment = simulated_model("bench", "qwen3-8b", max_replicas=3)
        deployment["metadata"]["annotations"]["hearth.dev/min-replicas"] = "3"
        cluster.kubectl("create", "namespace", "bench")
        applied = time.monotonic()
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(deployment))
        apply_seconds = time.monotonic() - applied
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = json.loads(cluster.kubectl("get", "deploy", "qwen3-8b", "-n", "bench", "-o", "json").stdout)
            if int(out["status"].get("readyReplicas") or 0) == 3:
                break
            time.sleep(0.5)
        busy_rss = rss_mib(sorted(cluster.all_pids()))
        latency = webhook_latency(cluster)
        cluster.down()
    print(f"hearth dev up (warm cache, image built): {up_seconds:.1f} s")
    print(
        f"memory of the whole local cluster (RSS, every process): {idle_rss:.0f} MiB idle, "
        f"{busy_rss:.0f} MiB with 3 model pods (simulator + sidecar each), containers included"
    )
    print(f"kubectl apply of an annotated Deployment: {1000 * apply_seconds:.0f} ms (kubectl process included)")
    print("webhook time inside the apiserver (apiserver_admission_webhook_admission_duration_seconds):")
    for name, figures in sorted(latency.items()):
        print(f"  {name}: {figures['mean_ms']:.1f} ms mean over {figures['count']:.0f} calls")


if __name__ == "__main__":
    main()
