"""Cold starts people can see and plan for: where a start is (policies.coldstart.progress_of), how long its
stages took (stages_of), the prediction of the next (predict), and the front door's use of them: progress
as reasoning deltas for opted-in chat streams, nothing new for API clients, Retry-After from the ETA. On
the local cluster: tests/e2e/test_coldstart.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from gateway.frontdoor import create_app
from policies import format_history, kind_of, parse_history, predict, progress_of, stages_of
from policies.coldstart import COLD, WARM
from tests.gateway_fakes import ScriptedResponse
from tests.test_frontdoor import CHAT, door, model


def pod(
    *,
    node: str | None = "gpu-node-0",
    fetch: str | None = None,
    running: bool = False,
    ready: bool = False,
    unschedulable: str = "",
) -> dict[str, Any]:
    conditions = [{"type": "PodScheduled", "status": "True" if node else "False", "message": unschedulable}]
    conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    states = {"running": {"running": {"startedAt": "t"}}, "waiting": {"waiting": {"reason": "PodInitializing"}}}
    init = states.get(fetch or "", {"terminated": {}} if fetch else {})
    spec: dict[str, Any] = {"nodeName": node} if node else {}
    if fetch:
        spec["initContainers"] = [{"name": "hearth-fetch"}]
    return {
        "metadata": {"name": "chat-1"},
        "spec": spec,
        "status": {
            "conditions": conditions,
            "initContainerStatuses": [{"name": "hearth-fetch", "state": init}] if fetch else [],
            "containerStatuses": [{"name": "model", "state": {"running": {}} if running else {"waiting": {}}}],
        },
    }


@pytest.mark.parametrize(
    ("pods", "desired", "stage", "words"),
    [
        ([], 0, "waking", "chat: asking for a replica"),
        ([], 1, "waking", "chat: creating its pod"),
        ([pod(node=None, unschedulable="0/2 nodes: Insufficient nvidia.com/gpu")], 1, "scheduling", "Insufficient"),
        ([pod(fetch="running")], 1, "fetching", "fetching its weights into the cache of gpu-node-0"),
        # On its node, the fetcher not started yet (its sandbox being made): already fetching, never
        # "starting its containers" before the fetch and again after it.
        ([pod(fetch="waiting")], 1, "fetching", "fetching its weights into the cache of gpu-node-0"),
        ([pod(fetch="done")], 1, "starting", "starting its containers on gpu-node-0"),
        ([pod(running=True)], 1, "loading", "loading the model on gpu-node-0"),
        ([pod(node=None), pod(running=True)], 2, "loading", "loading"),  # the most advanced pod speaks
        ([pod(running=True, ready=True)], 1, "ready", "chat is ready on gpu-node-0"),
    ],
)
def test_progress_names_the_stage_of_the_most_advanced_pod(
    pods: list[dict[str, Any]], desired: int, stage: str, words: str
) -> None:
    found = progress_of("chat", desired, pods)
    assert found.stage == stage and words in found.text


def started(fetch_seconds: int) -> dict[str, Any]:
    """A ready pod: created at :00, scheduled :02, fetched :03..:03+f, model started +1, ready +10."""

    def t(s: int) -> str:
        return f"2026-12-06T10:{s // 60:02d}:{s % 60:02d}Z"

    fetched = 3 + fetch_seconds
    return {
        "metadata": {"creationTimestamp": t(0)},
        "spec": {"nodeName": "gpu-node-0"},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": t(2)},
                {"type": "Ready", "status": "True", "lastTransitionTime": t(fetched + 11)},
            ],
            "initContainerStatuses": [
                {"name": "hearth-fetch", "state": {"terminated": {"startedAt": t(3), "finishedAt": t(fetched)}}}
            ],
            "containerStatuses": [{"name": "model", "state": {"running": {"startedAt": t(fetched + 1)}}}],
        },
    }


def test_a_starts_stages_come_from_the_pods_own_timestamps() -> None:
    cold = stages_of(started(40))
    assert cold == {"schedule": 2.0, "fetch": 40.0, "start": 1.0, "load": 10.0, "total": 54.0}
    assert kind_of(cold) == COLD
    warm = stages_of(started(0))
    assert warm is not None and kind_of(warm) == WARM and warm["total"] == 14.0
    not_ready = started(0)
    not_ready["status"]["conditions"][1]["status"] = "False"
    assert stages_of(not_ready) is None


def test_the_prediction_is_the_median_of_recent_starts_of_the_same_kind() -> None:
    assert predict([]) is None
    history = [(COLD, 90.0), (WARM, 20.0), (WARM, 60.0), (WARM, 22.0), (WARM, 21.0)]
    assert predict(history) == 21.5  # warm seen last: its median (one slow outlier does not move it much)
    assert predict(history, COLD) == 90.0
    assert predict([(COLD, 90.0)], WARM) == 90.0  # no warm start yet: all starts
    many = [(WARM, float(s)) for s in range(20)] + [(COLD, 100.0)]
    kept = parse_history(format_history(many))
    assert kept == [(WARM, 15.0), (WARM, 16.0), (WARM, 17.0), (WARM, 18.0), (WARM, 19.0), (COLD, 100.0)]
    assert parse_history("w12, c40 ,junk,x9,w") == [(WARM, 12.0), (COLD, 40.0)]


async def asgi_stream(app: Any, path: str, body: bytes, on_chunk: Callable[[bytes], None]) -> list[bytes]:
    """The response body of one POST, chunk by chunk as the app sends it (httpx's ASGI transport hands over
    the body only when the response is complete, so it cannot drive a test that reacts to each chunk)."""
    chunks: list[bytes] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays: no disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            on_chunk(message["body"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"door")],
        "client": ("127.0.0.1", 40000),
        "server": ("door", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return chunks


def held_stream(progress: bool, path: str = "/v1/chat/completions") -> tuple[list[bytes], Any]:
    """A chat stream held at zero while the start moves on (the table's progress changes), then answered."""
    chunk = b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"chat","choices":'
    chunk += b'[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}'
    answer = b"data: " + chunk + b"\n\ndata: [DONE]\n\n"
    front, _ = door({"http://a": ScriptedResponse(headers={"content-type": "text/event-stream"}, chunks=(answer,))})
    model(front, "ns/chat", "chat", {}, cold_start_progress=progress, heartbeat_interval=0.05)
    front.table.set_start("ns/chat", 30.0, "chat: waiting for a node")
    body = {"model": "chat", "stream": True, **CHAT}
    if path.endswith("/completions") and "chat" not in path:
        body = {"model": "chat", "stream": True, "prompt": "hi", "max_tokens": 2}

    steps = iter(["chat: fetching its weights", "chat: loading the model on gpu-node-0"])

    def moved_on(chunk: bytes) -> None:
        """Each time the client is told something, the start moves one step on (finally: a ready pod)."""
        if b"reasoning_content" in chunk or b"still starting" in chunk:
            following = next(steps, None)
            if following is not None:
                front.table.set_start("ns/chat", 30.0, following)
            else:
                front.table.set_backends("ns/chat", {"http://a": "pod-a"})

    async def scenario() -> list[bytes]:
        return await asgi_stream(create_app(front), path, json.dumps(body).encode(), moved_on)

    return asyncio.run(scenario()), front


def test_an_opted_in_chat_stream_sees_each_stage_then_the_answer() -> None:
    chunks, _ = held_stream(progress=True)
    text = b"".join(chunks).decode()
    events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]
    reasoning = [e["choices"][0]["delta"].get("reasoning_content") for e in events]
    lines = "".join(r for r in reasoning if r)
    assert lines.index("Starting chat from zero (it usually takes about 30s)") < lines.index("waiting for a node")
    assert lines.index("waiting for a node") < lines.index("fetching its weights") < lines.index("loading the model")
    assert "s to go)" in lines and "chat is ready after" in lines
    assert events[0]["choices"][0]["delta"]["role"] == "assistant" and events[0]["object"] == "chat.completion.chunk"
    assert events[-1]["choices"][0]["delta"] == {"content": "hi"}  # then the model's own answer, as it sent it
    assert text.endswith("data: [DONE]\n\n")


def test_without_the_option_or_outside_chat_a_held_stream_carries_only_comments() -> None:
    for chunks, _ in (held_stream(progress=False), held_stream(progress=True, path="/v1/completions")):
        held = b"".join(chunks).split(b'data: {"id":"c1"')[0]
        assert b"reasoning_content" not in held and held.startswith(b": hearth: model ns/chat is starting")


def test_the_sdk_reads_the_progress_as_reasoning_deltas() -> None:
    chunks, _ = held_stream(progress=True)
    events = [line[6:] for line in b"".join(chunks).decode().split("\n") if line.startswith("data: {")]
    parsed = [openai.types.chat.ChatCompletionChunk.model_validate_json(e) for e in events]
    extras = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in parsed]
    assert str(extras[0]).startswith("Starting chat") and parsed[-1].choices[0].delta.content == "hi"


def test_retry_after_follows_the_predicted_start() -> None:
    front, _ = door({})
    model(front, "ns/chat", "chat", {}, cold_start="reject")
    front.table.set_start("ns/chat", 42.0, "")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(front))
        async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:
            return await client.post("/v1/chat/completions", json={"model": "chat", **CHAT})

    refused = asyncio.run(call())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "42"
    assert "retry in about 42s" in refused.json()["error"]["message"]
    front.table.set_start("ns/chat", None, "")
    assert asyncio.run(call()).headers["retry-after"] == "30"  # nothing learned yet: the fixed default


def test_a_start_seen_fetching_is_told_the_cold_prediction() -> None:
    from policies import eta_for

    fields = {"eta": "8", "cold-eta": "41"}
    assert eta_for(fields, "scheduling") == 8.0  # which node, and whether its cache is warm, is not known yet
    assert eta_for(fields, "fetching") == 41.0  # this node must download the weights
    assert eta_for({"eta": "8"}, "fetching") == 8.0 and eta_for({}, "waking") is None
    from scaler.loop import Scaler

    assert Scaler._cold_eta([(COLD, 40.0), (WARM, 8.0), (WARM, 9.0)], 8.5) == 40
    assert Scaler._cold_eta([(WARM, 8.0)], 8.0) is None and Scaler._cold_eta([(COLD, 40.0)], 40.0) is None
