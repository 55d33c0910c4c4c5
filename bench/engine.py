"""A real engine behind Hearth: cold starts of llama.cpp's server (llama-cpp-python) for two generated model
sizes next to the simulator's, the node cache warm; and the time each of Hearth's hops adds to the first
token with the real engine behind them.

    .venv/bin/python bench/engine.py [--runs 5] [--hops 40]

Own state folder, ports and address range; the engine's image is built first if needed (about six minutes,
once per machine). Cold start: a request to a model at zero -> its first token through the front door,
after one start that put the model on the node (so no download is measured). Hops: one model kept at one
replica, `--hops` streamed completions of one token each, sent in turn straight to the engine (the pod's
runtime port), to the sidecar (the pod's port 8090) and to the front door (with an API key and the access
log, as shipped); each path's median, and what the sidecar and the front door add to the direct time.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import wait
from devcluster.build import ensure_binaries
from devcluster.cluster import Cluster
from devcluster.layout import Layout, default_cache_dir
from devcluster.models import engine_model, simulated_model
from policies import sidecar_url

NAMESPACE = "bench"
CASES = {  # name: (Deployment, what it is)
    "sim": ("hf://Qwen/Qwen3-8B", "simulator, 256 MiB safetensors, 5 s start-up"),
    "llama-small": ("hf://hearth-dev/llama-small-gguf", "llama.cpp, 8 MiB GGUF"),
    "llama-large": ("hf://hearth-dev/llama-large-gguf", "llama.cpp, 384 MiB GGUF"),
}


def first_token(url: str, model: str, headers: dict[str, str]) -> float:
    """Seconds from sending a streamed chat completion to its first content token."""
    body = {"model": model, "stream": True, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    started = time.perf_counter()
    with httpx.stream("POST", url, json=body, headers=headers, timeout=httpx.Timeout(10, read=600)) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                return time.perf_counter() - started
    raise RuntimeError(f"{url}: the stream ended without a token")


def pods(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return cluster.live_pods(NAMESPACE, f"app={name}")


def deployment(name: str) -> dict[str, Any]:
    uri = CASES[name][0]
    if name == "sim":
        return simulated_model(NAMESPACE, name, max_replicas=1, delay="2s", startup="5s", itl="1ms", model=uri)
    return engine_model(NAMESPACE, name, model=uri, delay="2s")


def cold_starts(cluster: Cluster, name: str, runs: int, headers: dict[str, str]) -> list[float]:
    url = f"{cluster.openai_base_url}/chat/completions"
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(deployment(name)))
    times = []
    for run in range(runs + 1):  # the first start fetches the model into the node's cache: not counted
        wait(f"{name} at zero", lambda: not pods(cluster, name))
        took = first_token(url, name, headers)
        if run:
            times.append(took)
        print(f"  {name} start {run}{' (fetch, not counted)' if not run else ''}: {took:.2f}s", flush=True)
    return times


def hops(cluster: Cluster, name: str, rounds: int, headers: dict[str, str]) -> dict[str, list[float]]:
    cluster.kubectl("annotate", "deploy", name, "-n", NAMESPACE, "hearth.dev/min-replicas=1", "--overwrite")
    (pod,) = wait(f"{name} Ready", lambda: [p for p in pods(cluster, name) if _ready(p)] or None)
    sidecar = sidecar_url(pod)
    assert sidecar is not None
    runtime = next(c for c in pod["spec"]["containers"] if c["name"] == "model")["ports"][0]["containerPort"]
    paths = {
        "direct": f"http://{pod['status']['podIP']}:{runtime}/v1/chat/completions",
        "sidecar": f"{sidecar}/v1/chat/completions",
        "front door + sidecar": f"{cluster.openai_base_url}/chat/completions",
    }
    times: dict[str, list[float]] = {path: [] for path in paths}
    for url in paths.values():  # warm every connection pool and the engine's prompt cache
        first_token(url, name, headers)
    for round_ in range(rounds):
        order = list(paths) if round_ % 2 == 0 else list(reversed(paths))  # alternating: no order wins
        for path in order:
            times[path].append(first_token(paths[path], name, headers))
    return times


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="cold starts per model, cache warm (medians)")
    parser.add_argument("--hops", type=int, default=40, help="first tokens per path for the hop costs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        layout = Layout(state=Path(state), port_base=56400, pod_net=50)
        cluster = Cluster(layout, ensure_binaries(default_cache_dir()), engine=True)
        cluster.up()
        try:
            cluster.kubectl("create", "namespace", NAMESPACE)
            headers = {"Authorization": f"Bearer {cluster.api_key(NAMESPACE)}"}
            starts = {name: cold_starts(cluster, name, args.runs, headers) for name in CASES}
            hop_times = hops(cluster, "llama-small", args.hops, headers)
        finally:
            cluster.down()
    print(f"\ncold start to first token, node cache warm, medians of {args.runs} (seconds)")
    print("| model | median | min | max |\n|---|---|---|---|")
    for name, times in starts.items():
        print(f"| {CASES[name][1]} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")
    direct = statistics.median(hop_times["direct"])
    print(f"\nfirst token with llama.cpp (8 MiB) behind each path, medians of {args.hops} (ms)")
    print("| path | median | added to direct |\n|---|---|---|")
    for path, times in hop_times.items():
        median = statistics.median(times)
        print(f"| {path} | {median * 1000:.2f} | {(median - direct) * 1000:+.2f} |")


if __name__ == "__main__":
    main()
