"""`hearth dev demo`: the local demo on a real control plane, narrated, with measured times.

The model at zero; one streamed chat completion through a cold start (heartbeats, then tokens); the scale
to one; a burst that scales to N; idle, back to zero. Then how to send your own requests and how to stop.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from devcluster.cluster import DEMO_NAMESPACE, REPO, Cluster
from policies import status_of

MANIFEST = REPO / "examples" / "demo.yaml"
ENGINE_MANIFEST = REPO / "examples" / "demo-llamacpp.yaml"  # `hearth dev demo --engine llama.cpp`
NAMESPACE = DEMO_NAMESPACE
LOADS = {
    MANIFEST: "the simulated model takes 5 s to load",
    ENGINE_MANIFEST: "llama.cpp's server starts and maps the 8 MiB model",
}


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)


def _deployment(cluster: Cluster, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", "deploy", name, "-n", NAMESPACE, "-o", "json").stdout)
    return result


def _state(cluster: Cluster, name: str) -> tuple[str, int, int]:
    deployment = _deployment(cluster, name)
    phase = (deployment["metadata"].get("labels") or {}).get("hearth.dev/phase", "-")
    return phase, int(deployment["spec"].get("replicas") or 0), int(deployment["status"].get("readyReplicas") or 0)


def wait_until(what: str, probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"the demo waited {timeout:.0f}s for {what}; see `hearth dev status` and the logs")


def stream(
    url: str, key: str, name: str, tokens: int, on_comment: Any = None, on_progress: Any = None
) -> tuple[str, float | None]:
    """One streamed chat completion over raw SSE; returns the text and the time to its first token.
    `on_comment` sees the heartbeat comments, `on_progress` each line of the start's progress (reasoning
    deltas, hearth.dev/cold-start-progress)."""
    request = {
        "model": name,
        "stream": True,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": "Why scale to zero?"}],
    }
    began, first, words = time.monotonic(), None, []
    headers = {"Authorization": f"Bearer {key}"}
    timeout = httpx.Timeout(10, read=120)
    with httpx.stream("POST", f"{url}/chat/completions", json=request, headers=headers, timeout=timeout) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}: {resp.read().decode(errors='replace')}")
        for line in resp.iter_lines():
            if line.startswith(":") and on_comment is not None:
                on_comment(line)
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if "error" in data:
                raise RuntimeError(data["error"]["message"])
            parts = (data["choices"][0].get("delta") or {}) if data["choices"] else {}
            if parts.get("reasoning_content") and on_progress is not None:
                for said in str(parts["reasoning_content"]).splitlines():
                    if said.strip():
                        on_progress(said)
            delta = parts.get("content")
            if delta:
                first = first if first is not None else time.monotonic() - began
                words.append(delta)
    return "".join(words), first


def run(cluster: Cluster, manifest: Path = MANIFEST) -> int:
    timeline = Timeline()
    name = yaml.safe_load(manifest.read_text())["metadata"]["name"]
    loads = LOADS.get(manifest, "the model loads")
    url = cluster.openai_base_url
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    key = cluster.api_key(NAMESPACE)  # `hearth dev up` made it: a Secret labelled hearth.dev/api-key
    timeline.say(f"API key of namespace {NAMESPACE}: the Secret hearth-dev-key (kubectl get secret -n {NAMESPACE})")
    cluster.kubectl("delete", "deploy", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    applied = cluster.kubectl("apply", "-f", str(manifest))
    timeline.say(f"kubectl apply -f {manifest.relative_to(REPO)}: {applied.stdout.strip()}")
    wait_until("ScaledToZero", lambda: _state(cluster, name)[0] == "ScaledToZero", 30)
    timeline.say("the model is ScaledToZero: 0 replicas, 0 GPUs (kubectl get deploy -L hearth.dev/phase)")

    print("\n1. One streamed chat completion while the model is at zero")
    beats: list[str] = []

    def heartbeat(line: str) -> None:
        beats.append(line)
        timeline.say(f"  SSE {line}")

    def progress(said: str) -> None:
        timeline.say(f"  shown: {said}")

    text, first = stream(url, key, name, 12, on_comment=heartbeat, on_progress=progress)
    timeline.say(f'  tokens: "{text}"')
    ready_at = time.monotonic()
    timeline.say(
        f"  cold start: first token {first:.1f}s after the request ({len(beats)} heartbeat comments "
        f"kept the stream alive; {loads})"
    )
    for pod in cluster.pods(NAMESPACE, f"app={name}"):
        fetched = cluster.kubectl("logs", "-n", NAMESPACE, pod["metadata"]["name"], "-c", "hearth-fetch", check=False)
        if fetched.stdout.strip():
            timeline.say(f"  model files: {fetched.stdout.strip().splitlines()[-1]}")
    events = json.loads(cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    activated = [e for e in events if e["reason"] == "Activated"]
    if activated:
        timeline.say(f"  scaler: {activated[-1]['message']}")
    wait_until("Ready", lambda: _state(cluster, name)[0] == "Ready", 30)
    timeline.say("  now Ready: 1/1 replicas")
    learned = wait_until("the start recorded", lambda: status_of(_deployment(cluster, name)).get("eta"), 15)
    timeline.say(
        f"  the scaler measured this start from the pod ({status_of(_deployment(cluster, name)).get('starts')}) and "
        f"predicts the next: {learned} s (Retry-After, progress lines, hearth status)"
    )

    print("\n2. A burst: 12 concurrent streams, target 4 per replica")
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(stream, url, key, name, 250) for _ in range(12)]
        peak = 1
        while not all(f.done() for f in futures):
            phase, replicas, ready = _state(cluster, name)
            if replicas > peak:
                peak = replicas
                timeline.say(f"  scaled to {replicas} replicas ({phase}, {ready} ready)")
            time.sleep(0.3)
        answers = [f.result() for f in futures]
    complete = sum(1 for text, _ in answers if text)
    timeline.say(f"  {complete}/12 streams complete, peak {peak} replicas")

    print("\n3. Idle: after hearth.dev/scale-down-delay (15s) the scaler steps down, one replica per delay, to zero")
    last = None
    while True:
        phase, replicas, ready = _state(cluster, name)
        if (phase, replicas) != last:
            timeline.say(f"  {phase}: {replicas} replica{'' if replicas == 1 else 's'}")
            last = (phase, replicas)
        if phase == "ScaledToZero" and replicas == 0:
            break
        if time.monotonic() - ready_at > 240:
            raise TimeoutError("the model did not go back to zero")
        time.sleep(0.5)
    timeline.say("back at zero GPUs")
    print()
    print("Send your own requests (any OpenAI client works):")
    print(f'  eval "$(hearth dev env)"   # KUBECONFIG, OPENAI_BASE_URL={url}, OPENAI_API_KEY')
    print(
        f'  curl -N $OPENAI_BASE_URL/chat/completions -H "Authorization: Bearer $OPENAI_API_KEY" \\\n'
        f"       -H 'content-type: application/json' \\\n"
        f'       -d \'{{"model": "{name}", "stream": true, "messages": [{{"role": "user", "content": "hi"}}]}}\''
    )
    print(f"  hearth status -n {NAMESPACE}; kubectl get deploy -n {NAMESPACE} -L hearth.dev/phase")
    print("Stop everything: hearth dev down")
    return 0
