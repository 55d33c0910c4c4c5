"""Cold start from zero to first token, broken down, with the node-local model cache cold, warm and
prewarmed, for the dev cluster's default generated model size and one ten times larger.

    .venv/bin/python bench/modelcache.py [--sizes 256,2560] [--runs 3] [--load-rate 200] [--hub modelscope]

Own state folder, ports and address range. The models are generated into the local hub's folder (once),
served by the dev cluster's hub to the real hub client, and loaded by the simulator at --load-rate MiB/s
(the pace of moving weights into accelerator memory). Phases, on the wall clock (every process runs on
this machine, so their clocks agree):

  scale + pod created  request sent -> the pod exists (activation push, scale write, ReplicaSet controller)
  scheduling           the pod exists -> bound to a node (seen through a watch)
  container start      bound -> the fetcher starts, and the fetcher done -> the simulator starts
                       (sandbox, CNI, runc, Python starting twice)
  fetch                the fetcher's own time: a download (list, download, verify, rename) or a hit's check
  load                 the simulator reading every shard (its own record)
  readiness            loaded -> the pod Ready (startup and readiness probes)
  first token          Ready -> the first token at the client (the front door learning of the pod, relay)

cold: the model is not on the node; warm: it is, from an earlier start; prewarmed: `hearth.dev/prewarm`
put it there while the model sat at zero, and this is its first start.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import wait
from devcluster.build import ensure_binaries
from devcluster.cluster import Cluster
from devcluster.hub import generate_model
from devcluster.layout import Layout, default_cache_dir
from devcluster.models import simulated_model
from policies import node_label

NAMESPACE = "bench"
NODE = "gpu-node-0"
PHASES = ("scale + pod created", "scheduling", "container start", "fetch", "load", "readiness", "first token")


class PodWatch:
    """Wall-clock times at which the pods of one model were first seen created, bound and Ready."""

    def __init__(self, cluster: Cluster, app: str) -> None:
        self.seen: dict[str, float] = {}
        argv = ["get", "pods", "-n", NAMESPACE, "-l", f"app={app}", "-w", "-o", "json", "--output-watch-events"]
        self.proc = subprocess.Popen(
            ["kubectl", f"--kubeconfig={cluster.layout.kubeconfig}", *argv], stdout=subprocess.PIPE, text=True
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        decoder = json.JSONDecoder()
        buffer = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            now = time.time()
            pod = event.get("object") or {}
            if event.get("type") == "ADDED":
                self.seen.setdefault("created", now)
            if (pod.get("spec") or {}).get("nodeName"):
                self.seen.setdefault("created", now)
                self.seen.setdefault("scheduled", now)
            conditions = (pod.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                self.seen.setdefault("ready", now)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def first_token(url: str, model: str, key: str) -> float:
    body = {"model": model, "stream": True, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", f"{url}/chat/completions", json=body, headers=headers, timeout=httpx.Timeout(10, read=600)
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                return time.time()
    raise RuntimeError("the stream ended without a token")


def fetch_record(cluster: Cluster, key: str, after: float) -> dict[str, Any]:
    log = cluster.layout.nodes / NODE / "model-cache" / ".hearth" / "events.jsonl"
    for line in reversed(log.read_text().splitlines()):
        event = json.loads(line)
        if event.get("key") == key and event["time"] > after:
            return dict(event)
    raise RuntimeError(f"no fetch of {key} recorded")


def at_zero(cluster: Cluster, name: str) -> None:
    def gone() -> bool:
        out = cluster.kubectl("get", "deploy", name, "-n", NAMESPACE, "-o", "jsonpath={.spec.replicas}").stdout
        pods = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"app={name}", "-o", "name").stdout.strip()
        return int(out or 0) == 0 and not pods

    wait(f"{name} back at zero", gone)


def labelled(cluster: Cluster, key: str) -> bool:
    labels = cluster.get_json("node", NODE)["metadata"].get("labels") or {}
    return labels.get(node_label(key)) == "true"


def evict(cluster: Cluster, key: str) -> None:
    """Takes the model off the node (as an eviction would) and waits for the agent to unlabel it."""
    shutil.rmtree(cluster.layout.nodes / NODE / "model-cache" / key, ignore_errors=True)
    wait("the node unlabelled", lambda: not labelled(cluster, key), timeout=60)


def prepare(cluster: Cluster, name: str, key: str, case: str) -> None:
    """The model at zero, and the node's cache as `case` wants it."""
    at_zero(cluster, name)
    if case == "warm":
        return
    evict(cluster, key)
    if case == "prewarmed":
        cluster.kubectl("annotate", "deploy", name, "-n", NAMESPACE, "hearth.dev/prewarm=true")
        wait("prewarmed", lambda: labelled(cluster, key), timeout=900)
        cluster.kubectl("annotate", "deploy", name, "-n", NAMESPACE, "hearth.dev/prewarm-")
        cluster.kubectl("delete", "jobs", "-n", NAMESPACE, "--all", "--wait=true")


def one_start(cluster: Cluster, name: str, key: str, api_key: str) -> dict[str, float]:
    watch = PodWatch(cluster, name)
    time.sleep(0.5)  # the watch is listening
    sent = time.time()
    try:
        token = first_token(cluster.openai_base_url, f"{NAMESPACE}/{name}", api_key)
    finally:
        time.sleep(0.3)
        watch.stop()
    seen = watch.seen
    fetched = fetch_record(cluster, key, sent)
    pod = cluster.get_json("pods", "-n", NAMESPACE, "-l", f"app={name}")["items"][0]
    stats = httpx.get(f"http://{pod['status']['podIP']}:8000/sim/stats", timeout=5).json()["load"]
    fetch_end = float(fetched["time"])
    fetch_start = fetch_end - float(fetched.get("seconds") or 0)
    return {
        "scale + pod created": seen["created"] - sent,
        "scheduling": seen["scheduled"] - seen["created"],
        "container start": (fetch_start - seen["scheduled"]) + (stats["started_at"] - fetch_end),
        "fetch": fetch_end - fetch_start,
        "download": fetch_end - fetch_start if fetched["outcome"] != "hit" else 0.0,
        "load": stats["seconds"],
        "readiness": seen["ready"] - stats["loaded_at"],
        "first token": token - seen["ready"],
        "total": token - sent,
        "downloaded MiB": float(fetched.get("bytes") or 0) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,2560", help="model sizes in MiB")
    parser.add_argument("--runs", type=int, default=3, help="starts per case (medians are printed)")
    parser.add_argument("--load-rate", type=float, default=200.0, help="the simulator's load pace, MiB/s")
    parser.add_argument(
        "--hub", choices=("huggingface", "modelscope"), default="huggingface", help="the API the models come by"
    )
    args = parser.parse_args()
    scheme = "hf" if args.hub == "huggingface" else "modelscope"
    sizes = [int(s) for s in args.sizes.split(",")]
    hub = default_cache_dir() / "hub" / "hearth-dev"
    for size in sizes:
        if not (hub / f"bench-{size}" / "config.json").is_file():
            print(f"generating a {size} MiB model for the hub", flush=True)
            generate_model(hub / f"bench-{size}", size, shards=max(2, -(-size // 512)))
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster(Layout(state=Path(state), port_base=56400, pod_net=50), ensure_binaries(default_cache_dir()))
        cluster.up()
        try:
            cluster.kubectl("create", "namespace", NAMESPACE)
            api_key = cluster.api_key(NAMESPACE)
            for size in sizes:
                name, repo = f"m{size}", f"hearth-dev/bench-{size}"
                key = cluster.cache_key(repo, args.hub)
                uri = f"{scheme}://{repo}"
                model = simulated_model(NAMESPACE, name, max_replicas=1, delay="2s", startup="0s", itl="1ms", model=uri)
                annotations = model["spec"]["template"]["metadata"]["annotations"]
                annotations["hearth.dev/extra-args"] += f" --load-rate={args.load_rate}"
                cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(model))
                for run in range(args.runs):
                    for case in ("cold", "warm", "prewarmed"):
                        prepare(cluster, name, key, case)
                        figures = one_start(cluster, name, key, api_key)
                        results.setdefault((size, case), []).append(figures)
                        print(f"{size} MiB {case} run {run + 1}: total {figures['total']:.2f} s", flush=True)
        finally:
            cluster.down()
    report(results, args.load_rate, scheme)


def report(results: dict[tuple[int, str], list[dict[str, float]]], rate: float, scheme: str) -> None:
    columns = [*PHASES, "total", "download", "downloaded MiB"]
    print(f"\nmedians in seconds ({scheme}:// models, simulator load pace {rate:.0f} MiB/s)")
    print("| model | cache | " + " | ".join(columns) + " | total / load |")
    print("|---" * (len(columns) + 3) + "|")
    for (size, case), runs in results.items():
        medians = {c: statistics.median(r[c] for r in runs) for c in columns}
        ratio = medians["total"] / medians["load"] if medians["load"] else float("nan")
        cells = " | ".join(f"{medians[c]:.2f}" if c != "downloaded MiB" else f"{medians[c]:.0f}" for c in columns)
        print(f"| {size} MiB | {case} | {cells} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
