"""What Hearth itself adds to a cold start: a streamed request to a model at zero, whose simulator loads in
0 s, until its first token. Everything measured is the platform: the activation push, the scale write, the
ReplicaSet controller, the scheduler, the kubelet starting the sandbox and two containers, the startup and
readiness probes, the front door learning of the ready pod, and the relay through front door and sidecar.

    .venv/bin/python bench/coldstart.py [--cycles 5]     (own state folder, ports and address range)

It uses only what every version of the local cluster offers (`Cluster.up`, `kubectl`, the front door's
URL), so the same script measures an older checkout side by side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devcluster.build import ensure_binaries
from devcluster.cluster import Cluster
from devcluster.layout import Layout, default_cache_dir
from devcluster.models import simulated_model


def replicas(cluster: Cluster, name: str) -> int:
    out = cluster.kubectl("get", "deploy", name, "-n", "bench", "-o", "jsonpath={.spec.replicas}").stdout
    return int(out or 0)


def first_token(url: str, model: str, key: str) -> float:
    """Seconds from sending a streamed chat request to the first content delta."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "hi"}],
    }
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {key}"}
    timeout = httpx.Timeout(10, read=120)
    with httpx.stream("POST", f"{url}/chat/completions", json=body, headers=headers, timeout=timeout) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                return time.monotonic() - started
    raise RuntimeError("the stream ended without a token")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster(Layout(state=Path(state), port_base=56400, pod_net=50), ensure_binaries(default_cache_dir()))
        cluster.up()
        try:
            cluster.kubectl("create", "namespace", "bench")
            model = simulated_model("bench", "cold", max_replicas=1, delay="2s", startup="0s", itl="1ms")
            cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(model))
            url = cluster.openai_base_url
            key = cluster.api_key("bench")
            times = []
            for _ in range(args.cycles):
                deadline = time.monotonic() + 120
                while (
                    replicas(cluster, "cold") != 0
                    or cluster.kubectl("get", "pods", "-n", "bench", "-o", "name").stdout.strip()
                ):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the model did not go back to zero")
                    time.sleep(0.5)
                times.append(first_token(url, "bench/cold", key))
            pushes = activation_pushes(cluster)
        finally:
            cluster.down()
    each = ", ".join(f"{t:.2f}" for t in times)
    print(f"request at zero -> first token (simulator start-up 0 s): median {statistics.median(times):.2f} s ({each})")
    if pushes:
        mean_ms = 1000 * pushes[0] / pushes[1]
        print(f"activation push accepted by the leading scaler: mean {mean_ms:.0f} ms over {pushes[1]:.0f} pushes")


def activation_pushes(cluster: Cluster) -> tuple[float, float] | None:
    """Sum and count of hearth_gateway_activation_push_seconds over every front-door pod (when the
    cluster runs them as pods: the first wave's local processes did not export it)."""
    if not hasattr(cluster, "hearth_pods"):
        return None
    total = count = 0.0
    for pod in cluster.hearth_pods("hearth-gateway"):
        text = httpx.get(f"http://{pod['status']['podIP']}:9090/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "hearth_gateway_activation_push_seconds_sum":
                    total += sample.value
                elif sample.name == "hearth_gateway_activation_push_seconds_count":
                    count += sample.value
    return (total, count) if count else None


if __name__ == "__main__":
    main()
