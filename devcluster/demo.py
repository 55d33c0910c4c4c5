"""`hearth demo`: the local demo on a real control plane, narrated, with measured times."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from devcluster.cluster import REPO, Cluster

EXAMPLE = REPO / "examples" / "qwen3-8b.yaml"


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)


def _ready_pod(cluster: Cluster, namespace: str, app: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json", check=False)
    if result.returncode != 0:
        return None
    for pod in json.loads(result.stdout).get("items", []):
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])):
            return dict(pod)
    return None


def wait_until(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError("the demo waited too long; see `hearth dev status` and the logs in the state folder")


def run(cluster: Cluster, manifest: Path = EXAMPLE) -> int:
    timeline = Timeline()
    cluster.kubectl("create", "namespace", "ai", check=False)
    applied = cluster.kubectl("apply", "-f", str(manifest))
    timeline.say(f"kubectl apply -f {manifest.relative_to(REPO)}: {applied.stdout.strip()}")
    pod = wait_until(lambda: _ready_pod(cluster, "ai", "qwen3-8b"), 120)
    stamp = json.loads(pod["metadata"]["annotations"]["hearth.dev/rendered"])
    model = pod["spec"]["containers"][0]
    limits = ", ".join(f"{k}={v}" for k, v in model["resources"]["limits"].items())
    timeline.say(
        f"pod {pod['metadata']['name']} rendered from runtime {stamp['runtime']} ({model['image']}, {limits}),"
    )
    timeline.say(
        f"  scheduled on {pod['spec']['nodeName']}, Ready at {pod['status']['podIP']} (model + hearth-gateway sidecar)"
    )
    url = f"http://{pod['status']['podIP']}:{stamp['sidecarPort']}/v1/chat/completions"
    request = {
        "model": stamp["servedName"],
        "stream": True,
        "max_tokens": 12,
        "messages": [{"role": "user", "content": "Why scale to zero?"}],
    }
    began = time.monotonic()
    first: float | None = None
    words: list[str] = []
    with httpx.stream("POST", url, json=request, timeout=httpx.Timeout(10, read=60)) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0].get("delta", {}).get("content")
            if delta:
                first = first or time.monotonic() - began
                words.append(delta)
    timeline.say(f'streamed through the sidecar: "{"".join(words)}" (first token after {1000 * (first or 0):.0f} ms)')
    print()
    print("Try it yourself:")
    print(f"  export KUBECONFIG={cluster.layout.kubeconfig}")
    print("  kubectl get deploy,pods -n ai -o wide; kubectl get inferenceruntimes")
    print(f"  curl -N {url} -H 'content-type: application/json' \\")
    body = json.dumps({"model": stamp["servedName"], "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    print(f"       -d '{body}'")
    print("  hearth dev down   # stop everything")
    return 0
