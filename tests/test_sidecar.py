"""The sidecar in process: its ASGI app driven directly, the runtime scripted. What the sidecar counts in
flight (the scaler's per-pod demand, the drain's wait) comes back to zero however a request ends. The
sidecar as a process, with SIGTERM and a real runtime, is in tests/test_gateway.py."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import pytest

from gateway import sidecar as sidecar_module
from gateway.settings import SidecarSettings
from gateway.sidecar import Drain, create_app
from tests.gateway_fakes import ScriptedResponse, ScriptedUpstreams

RUNTIME = "http://runtime"
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def sidecar(script: ScriptedResponse | Exception) -> tuple[httpx.AsyncClient, Drain]:
    drain = Drain()
    upstreams: Any = ScriptedUpstreams({RUNTIME: script})
    settings = SidecarSettings(upstream=RUNTIME)
    app = create_app(settings, drain, upstreams)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar"), drain


def test_a_stream_is_counted_while_open_and_the_drain_waits_for_it() -> None:
    gate = asyncio.Event()

    async def scenario() -> tuple[list[int], httpx.Response, dict[str, object]]:
        client, drain = sidecar(ScriptedResponse(chunks=(b"data: 1\n\n",), gate=gate))
        seen = []
        request = asyncio.create_task(client.post("/v1/chat/completions", json=BODY))
        while drain.in_flight == 0:  # noqa: ASYNC110 - yield (no timer) until the request is forwarded
            await asyncio.sleep(0)
        seen.append((await client.get("/demand")).json()["inFlight"])
        drained = asyncio.create_task(client.get("/drained"))  # the model container's preStop hook
        drain.begin()  # the sidecar's SIGTERM, sent by the kubelet beside the hook
        refused = await client.post("/v1/chat/completions", json=BODY)  # new work goes elsewhere
        assert not drained.done()  # the drain waits for the open stream
        gate.set()
        answer = await request
        seen.append(drain.in_flight)
        assert answer.content == b"data: 1\n\n"
        return seen, refused, (await drained).json()

    seen, refused, drained = asyncio.run(scenario())
    assert seen == [1, 0]
    assert refused.status_code == 503 and refused.headers["x-hearth-draining"] == "1"
    assert drained == {"drained": True, "inFlight": 0}


def test_a_runtime_that_cannot_be_reached_is_a_502_and_counts_nothing() -> None:
    async def scenario() -> tuple[httpx.Response, int]:
        client, drain = sidecar(aiohttp.ClientConnectionError("refused"))
        return await client.post("/v1/chat/completions", json=BODY), drain.in_flight

    answer, in_flight = asyncio.run(scenario())
    assert answer.status_code == 502 and json.loads(answer.content)["error"]["code"] == "upstream_unreachable"
    assert in_flight == 0


def test_a_runtime_that_is_not_running_is_passed_over_not_an_error() -> None:
    """Nothing listens (the engine was killed, or restarts in place): the front door is told to pass the pod
    over, as when it drains, so a request with nowhere else to go is held for the restart (found with
    llama.cpp killed mid-stream: the next request was a 502)."""
    refused = ConnectionRefusedError(111, "Connection refused")
    key = SimpleNamespace(host="127.0.0.1", port=8000, ssl=False)

    async def scenario() -> tuple[httpx.Response, int]:
        client, drain = sidecar(aiohttp.ClientConnectorError(key, refused))  # type: ignore[arg-type]
        return await client.post("/v1/chat/completions", json=BODY), drain.in_flight

    answer, in_flight = asyncio.run(scenario())
    assert answer.status_code == 503 and json.loads(answer.content)["error"]["code"] == "runtime_down"
    assert answer.headers["x-hearth-draining"] == "runtime-down" and in_flight == 0


def test_no_call_drains_a_pod_only_its_sigterm_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unauthenticated `GET /drain` once made any pod unready for good; then a token in the pod's spec
    (readable by the `view` role) guarded it. Now no route starts a drain: `/drained` only waits for the
    one SIGTERM began, and outside a shutdown it answers 409 after a short wait."""
    monkeypatch.setattr(sidecar_module, "DRAIN_BEGINS_WITHIN", 0.05)

    async def scenario() -> tuple[httpx.Response, bool, int]:
        client, drain = sidecar(ScriptedResponse(chunks=(b"{}",)))
        waited = await client.get("/drained")
        await client.post("/drain")  # no such route of the sidecar's: it goes to the runtime like any path
        served = await client.post("/v1/chat/completions", json=BODY)  # still serving
        return waited, drain.draining, served.status_code

    waited, draining, served = asyncio.run(scenario())
    assert waited.status_code == 409 and waited.json() == {"error": "this pod is not shutting down", "drained": False}
    assert not draining and served == 200


def test_the_sidecar_has_metrics_of_its_own_apart_from_the_runtimes() -> None:
    """/metrics is the runtime's, relayed as it is; the sidecar's own are at /hearth/metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    async def scenario() -> tuple[dict[str, float], httpx.Response]:
        client, drain = sidecar(ScriptedResponse(chunks=(b"vllm:num_requests_running 0\n",)))
        await client.post("/v1/chat/completions", json=BODY)
        runtime = await client.get("/metrics")  # forwarded to the runtime
        drain.begin()
        await client.post("/v1/chat/completions", json=BODY)  # refused: draining
        text = (await client.get("/hearth/metrics")).text
        values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
        return values, runtime

    values, runtime = asyncio.run(scenario())
    assert runtime.content == b"vllm:num_requests_running 0\n"
    assert values["hearth_sidecar_served_total"] == 2.0  # the chat and the runtime's /metrics
    assert values["hearth_sidecar_draining"] == 1.0 and values["hearth_sidecar_in_flight"] == 0.0
    assert values["hearth_sidecar_refused_total"] == 1.0
