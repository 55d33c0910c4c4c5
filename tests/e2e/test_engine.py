"""A real engine behind Hearth: llama.cpp's OpenAI server (llama-cpp-python, compiled here into an image of its
own, devcluster/engine.py) serving random-weight Llama models in GGUF that the dev hub generates
(devcluster/gguf_model.py). Keep mode as a llama.cpp user writes the Deployment, adopted with `hearth adopt`;
render mode from the node cache with the dev runtime `llamacpp-nvidia`; errors as the engine words them, the
engine killed mid-stream, a drain at scale-down, cold starts that grow with the model's size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.gguf_model import WORDS_TEXT
from devcluster.models import engine_model
from policies import sidecar_url
from tests.e2e.conftest import MESSAGES, apply, get_json, phase, replicas, sdk, wait_for
from tests.support import ROOT

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "llamacpp" / "deployment.yaml"


def adopted_example(cluster: Cluster, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """examples/llamacpp/deployment.yaml with the cluster's engine image and hub, through `hearth adopt`."""
    assert cluster.engine_image is not None, "the e2e cluster starts with the engine"
    text = EXAMPLE.read_text().replace("localhost/hearth-llamacpp:dev", cluster.engine_image)
    text = text.replace("http://hub.dev.example:8088", cluster.layout.hub_url)
    source = tmp_path / "llama.yaml"
    source.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "hearth", "adopt", "-f", str(source)], capture_output=True, text=True, check=True
    )
    return yaml.safe_load(done.stdout), done.stderr


def words(chunks: openai.Stream[Any]) -> tuple[list[str], str | None]:
    """The content pieces of a streamed chat completion and its finish reason."""
    pieces: list[str] = []
    finish = None
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.delta.content:
            pieces.append(choice.delta.content)
        finish = choice.finish_reason or finish
    return pieces, finish


def test_a_llamacpp_deployment_adopted_as_written_serves_from_zero(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    deployment, warnings = adopted_example(cluster, tmp_path)
    assert "llama-cpp-python" not in warnings  # the example has both flags the webhook asks for
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["hearth.dev/served-name"] == "llama-small,llama"  # read off --model_alias
    deployment["metadata"]["namespace"] = namespace
    apply(cluster, deployment)
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "llama") == "ScaledToZero", timeout=30)
    client = sdk(cluster, namespace, timeout=180)

    started = time.monotonic()
    stream = client.chat.completions.create(model="llama-small", messages=MESSAGES, stream=True, max_tokens=40)
    pieces, finish = words(stream)
    cold = time.monotonic() - started
    assert (len(pieces), finish) == (40, "length"), pieces  # every token, to the end the engine reported
    assert set("".join(pieces).split()) <= set(WORDS_TEXT.split())  # the generated vocabulary, no stray bytes

    answer = client.chat.completions.create(model="llama", messages=MESSAGES, max_tokens=12)  # the name, too
    assert answer.model == "llama-small" and answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 12

    # Errors reach the SDK as the engine words them, through the sidecar and the front door.
    with pytest.raises(openai.BadRequestError) as overflow:
        client.chat.completions.create(
            model="llama-small", messages=[{"role": "user", "content": "the " * 2100}], max_tokens=5
        )
    assert overflow.value.code == "context_length_exceeded"
    assert "maximum context length is 2048 tokens" in str(overflow.value.message)
    # llama-cpp-python answers a bad parameter with 500 and pydantic's words (not vLLM's 400).
    with pytest.raises(openai.InternalServerError) as invalid:
        client.chat.completions.create(model="llama-small", messages=MESSAGES, max_tokens=5, top_p=7)
    assert "top_p" in str(invalid.value.message) and "less than or equal to 1" in str(invalid.value.message)

    # The pod is still serving, and the Deployment is as the user wrote it with Hearth's sidecar beside it.
    pieces, finish = words(client.chat.completions.create(model="llama", messages=MESSAGES, stream=True, max_tokens=5))
    assert (len(pieces), finish) == (5, "length")
    (pod,) = cluster.live_pods(namespace, "app=llama")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["server", "hearth-gateway"]
    server = pod["spec"]["containers"][0]
    assert server["command"] == ["python3", "-m", "llama_cpp.server"] and server["image"] == cluster.engine_image
    print(f"keep mode, llama.cpp: cold start to the end of a 40-token stream {cold:.1f}s")


def test_an_engine_killed_mid_stream_gives_the_client_an_error_not_a_hang(cluster: Cluster, namespace: str) -> None:
    apply(cluster, engine_model(namespace, "victim", delay="60s"))
    client = sdk(cluster, namespace, timeout=180)
    pieces, _ = words(client.chat.completions.create(model="victim", messages=MESSAGES, stream=True, max_tokens=3))
    assert len(pieces) == 3  # awake
    (pod,) = cluster.live_pods(namespace, "app=victim")
    stream = client.chat.completions.create(model="victim", messages=MESSAGES, stream=True, max_tokens=1500)
    seen = 0
    started = time.monotonic()
    with pytest.raises(openai.APIError) as broken:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen += 1
            if seen == 20:
                for pid in cluster.container_pids(pod, "model"):
                    os.kill(pid, signal.SIGKILL)
                seen += 1
    assert 20 < seen < 1500 and time.monotonic() - started < 60, (seen, broken.value)
    # The kubelet restarts the engine in place; the next request, sent at once and without the SDK's retries,
    # is held until it is back (the sidecar passes the pod over while nothing listens), then answered.
    pieces, finish = words(client.chat.completions.create(model="victim", messages=MESSAGES, stream=True, max_tokens=4))
    assert (len(pieces), finish) == (4, "length")
    (after,) = cluster.live_pods(namespace, "app=victim")
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]  # the same pod, its engine restarted
    assert next(c for c in after["status"]["containerStatuses"] if c["name"] == "model")["restartCount"] >= 1


def test_an_open_engine_stream_is_drained_when_its_pod_goes(cluster: Cluster, namespace: str) -> None:
    apply(cluster, engine_model(namespace, "drain", delay="60s"))
    client = sdk(cluster, namespace, timeout=180)
    assert len(words(client.chat.completions.create(model="drain", messages=MESSAGES, stream=True, max_tokens=2))[0])
    # The pod is found before the stream starts: the tiny model's 300 tokens once ended during the lookup,
    # and the wait for the stream to reach the pod then saw nothing open.
    (found,) = cluster.live_pods(namespace, "app=drain")
    sidecar = sidecar_url(found)
    assert sidecar is not None
    result: list[tuple[list[str], str | None, float]] = []

    def long_stream() -> None:
        pieces, finish = words(
            client.chat.completions.create(model="drain", messages=MESSAGES, stream=True, max_tokens=1500)
        )
        result.append((pieces, finish, time.monotonic()))

    streaming = threading.Thread(target=long_stream)
    streaming.start()  # some seconds of tokens: llama-cpp-python's server sends one event per token
    wait_for("the stream to reach the pod", lambda: httpx.get(f"{sidecar}/demand").json()["inFlight"] == 1, 60, 0.05)
    cluster.kubectl("delete", "pod", found["metadata"]["name"], "-n", namespace, "--wait=false")  # as a scale-down
    deleted = time.monotonic()
    streaming.join(timeout=120)
    assert len(result) == 1
    pieces, finish, ended = result[0]
    assert (len(pieces), finish) == (1500, "length")  # drained: not one token cut
    assert ended > deleted, "the stream ended before its pod was deleted: nothing was drained"


def cold_start(cluster: Cluster, namespace: str, name: str, model: str) -> float:
    """Seconds from a request to a model at zero to its first token (the node cache cold: a new cluster)."""
    apply(cluster, engine_model(namespace, name, model=model))
    wait_for(f"{name} ScaledToZero", lambda: phase(cluster, namespace, name) == "ScaledToZero", timeout=30)
    client = sdk(cluster, namespace, timeout=240)
    started = time.monotonic()
    first = None
    for chunk in client.chat.completions.create(model=name, messages=MESSAGES, stream=True, max_tokens=3):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.monotonic() - started
    assert first is not None
    return first


def test_render_mode_runs_the_engine_on_a_model_from_the_node_cache(cluster: Cluster, namespace: str) -> None:
    """The dev runtime llamacpp-nvidia renders the engine's command line with {{ model.path }} from the node
    cache, and an 8 MiB and a 384 MiB model each start from zero from it (their first-token times printed)."""
    small = cold_start(cluster, namespace, "small", "hf://hearth-dev/llama-small-gguf")
    (pod,) = cluster.live_pods(namespace, "app=small")
    model = next(c for c in pod["spec"]["containers"] if c["name"] == "model")
    assert model["image"] == cluster.engine_image
    path = f"/{cluster.cache_key('hearth-dev/llama-small-gguf')}/model.gguf"  # under the cache's mount
    assert any(a.startswith("--model=/") and a.endswith(path) for a in model["args"]), model["args"]
    fetched = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "hearth-fetch").stdout
    assert "download done" in fetched, fetched
    wait_for("small back to zero", lambda: replicas(cluster, namespace, "small") == 0, timeout=60)
    large = cold_start(cluster, namespace, "large", "hf://hearth-dev/llama-large-gguf")
    # The times are a figure, not a check: with the other worker's tests beside it, the small model's first
    # start once took longer than the large one's (7.1 s against 6.1). What is checked is what was loaded:
    # each model whole, from its node's cache.
    print(f"render mode, llama.cpp, cold cache: first token {small:.1f}s (8 MiB), {large:.1f}s (384 MiB)")
    (big,) = cluster.live_pods(namespace, "app=large")
    for found, repo, mib in ((pod, "hearth-dev/llama-small-gguf", 8), (big, "hearth-dev/llama-large-gguf", 384)):
        cached = cluster.layout.nodes / found["spec"]["nodeName"] / "model-cache" / cluster.cache_key(repo)
        assert (cached / "model.gguf").stat().st_size >= mib * 2**20 * 0.9, (repo, mib)
    events = get_json(cluster, "events", "-n", namespace)["items"]
    assert not [e for e in events if e["reason"] == "BackOff"], events  # no engine restarted
