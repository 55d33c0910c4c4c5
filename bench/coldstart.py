"""What Hearth itself adds to a cold start: a streamed request to a model at zero, whose simulator loads in
0 s, until its first token. Everything measured is the platform: the activation push, the scale write, the
ReplicaSet controller, the scheduler, the kubelet starting the sandbox and two containers, the startup and
readiness probes, the front door learning of the ready pod, and the relay through front door and sidecar.

    .venv/bin/python bench/coldstart.py [--cycles 5] [--startup 0s]   (own state folder, ports, addresses)

It also prints, per start, the scaler's prediction made before it (the `eta` of its condition) next to the
start it then measured from the pod's timestamps (the last of `starts`), when the checkout has them.

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


def condition_fields(cluster: Cluster) -> dict[str, str]:
    """The fields of the scaler's condition on the model (`key value; ...`), read without Hearth's code."""
    deployment = cluster.get_json("deploy", "cold", "-n", "bench")
    for item in (deployment.get("status") or {}).get("conditions") or []:
        if item.get("type") == "hearth.dev/Serving":
            parts = str(item.get("message") or "").split("; failed: ")[0].split("; ")
            return dict(part.partition(" ")[::2] for part in parts if " " in part)
    return {}


def last_start(cluster: Cluster, before: str | None) -> float | None:
    """The start the scaler recorded after `before` (its `starts` field then), in seconds; None if none."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        starts = condition_fields(cluster).get("starts")
        if starts and starts != before:
            return float(starts.split(",")[-1][1:])
        time.sleep(0.5)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--startup", default="0s", help="the simulator's load time (e.g. 4s)")
    args = parser.parse_args()
    predictions: list[tuple[float | None, float]] = []
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster(Layout(state=Path(state), port_base=56400, pod_net=50), ensure_binaries(default_cache_dir()))
        cluster.up()
        try:
            cluster.kubectl("create", "namespace", "bench")
            model = simulated_model("bench", "cold", max_replicas=1, delay="2s", startup=args.startup, itl="1ms")
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
                fields = condition_fields(cluster)
                times.append(first_token(url, "bench/cold", key))
                measured = last_start(cluster, fields.get("starts"))
                if measured is not None:
                    eta = fields.get("eta")
                    predictions.append((float(eta) if eta else None, measured))
            pushes = activation_pushes(cluster)
        finally:
            cluster.down()
    each = ", ".join(f"{t:.2f}" for t in times)
    print(
        f"request at zero -> first token (simulator start-up {args.startup}): "
        f"median {statistics.median(times):.2f} s ({each})"
    )
    if predictions:
        pairs = ", ".join(f"{'-' if p is None else f'{p:.0f}'}/{a:.0f}" for p, a in predictions)
        errors = [abs(p - a) for p, a in predictions if p is not None]
        error = f"; mean |predicted - actual| {statistics.mean(errors):.1f} s" if errors else ""
        print(f"start predicted/measured by the scaler, s (pod created -> Ready): {pairs}{error}")
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
