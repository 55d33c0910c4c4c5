"""The front door in process: its ASGI app driven directly, backends scripted (no sockets, no sleeps).
The process-level tests with real servers and the OpenAI SDK are in tests/test_gateway.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from gateway.activator import Activator
from gateway.discovery import StaticUpstreams
from gateway.frontdoor import FrontDoor, create_app
from gateway.metrics import GatewayMetrics
from gateway.settings import FrontDoorSettings
from gateway.table import Holding, ModelTable
from policies import ScaleSpec
from tests.gateway_fakes import ScriptedResponse, ScriptedUpstreams


def door(scripts: dict[str, ScriptedResponse | Exception], **settings: Any) -> tuple[FrontDoor, ScriptedUpstreams]:
    upstreams = ScriptedUpstreams(scripts)
    metrics = GatewayMetrics(CollectorRegistry())
    activator = Activator(httpx.AsyncClient(), lambda: [], metrics)  # no scaler: pokes go nowhere
    front = FrontDoor(FrontDoorSettings(**settings), ModelTable(), upstreams, metrics, activator)  # type: ignore[arg-type]
    return front, upstreams


def model(front: FrontDoor, key: str, served: str, backends: dict[str, str], created: str = "", **scale: Any) -> None:
    front.table.upsert(key, served, ScaleSpec(**scale), created)
    front.table.set_backends(key, backends)


def in_flight(front: FrontDoor, key: str) -> tuple[int, list[int], float]:
    state = front.table.models[key]
    gauge = front.metrics.registry.get_sample_value("hearth_gateway_in_flight", {"model": key}) or 0.0
    return state.in_flight, [b.in_flight for b in state.backends.values()], gauge


def post(front: FrontDoor, body: dict[str, Any]) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(front))
        async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:
            return await client.post("/v1/chat/completions", json=body)

    return asyncio.run(call())


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
OK = b'{"choices":[{"message":{"content":"ok"}}]}'


def test_a_relayed_answer_whose_head_is_refused_gives_its_counts_back() -> None:
    """uvicorn refuses to send some relayed header values: the relay then never starts, and the request's
    in-flight counts (backend, model, gauge) must still come back down."""
    front, _ = door({"http://a": ScriptedResponse(chunks=(OK,))})
    model(front, "ns/chat", "chat", {"http://a": "pod-a"})

    async def refusing_send(message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            raise RuntimeError("Invalid HTTP header value.")

    messages = [{"type": "http.request", "body": json.dumps({"model": "chat", **CHAT}).encode(), "more_body": False}]

    async def receive() -> Mapping[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "server": ("door", 80),
        "client": ("client", 1),
    }
    with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
        asyncio.run(create_app(front)(scope, receive, refusing_send))  # type: ignore[arg-type]
    assert in_flight(front, "ns/chat") == (0, [0], 0.0)


def test_a_backend_that_cannot_be_reached_is_skipped_for_the_next() -> None:
    front, upstreams = door(
        {"http://a": aiohttp.ClientConnectionError("refused"), "http://b": ScriptedResponse(chunks=(OK,))}
    )
    model(front, "ns/chat", "chat", {"http://a": "pod-a", "http://b": "pod-b"})
    answer = post(front, {"model": "chat", **CHAT})
    assert answer.status_code == 200 and answer.content == OK
    assert [url for url, _ in upstreams.sent] == ["http://a/v1/chat/completions", "http://b/v1/chat/completions"]
    assert in_flight(front, "ns/chat") == (0, [0, 0], 0.0)


def test_retries_are_bounded() -> None:
    refused = aiohttp.ClientConnectionError("refused")
    backends = {f"http://{n}": f"pod-{n}" for n in "abcde"}
    front, upstreams = door(dict.fromkeys(backends, refused), retries=2)
    model(front, "ns/chat", "chat", backends, cold_start="reject")
    answer = post(front, {"model": "chat", **CHAT})
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_starting"
    assert len(upstreams.sent) == 3  # the first try and two retries


def test_the_served_name_is_what_the_runtime_is_asked_for() -> None:
    front, upstreams = door({"http://a": ScriptedResponse(chunks=(OK,))})
    model(front, "team-a/chat", "Qwen/Qwen3-8B", {"http://a": "pod-a"})
    assert post(front, {"model": "team-a/chat", **CHAT}).status_code == 200
    assert upstreams.sent[0][1]["model"] == "Qwen/Qwen3-8B"


def reached(front: FrontDoor, upstreams: ScriptedUpstreams, name: str) -> str:
    """The backend a plain or full model name reached."""
    assert post(front, {"model": name, **CHAT}).status_code == 200
    return upstreams.sent[-1][0].removesuffix("/v1/chat/completions")


def test_a_contested_plain_name_stays_with_the_model_that_held_it_first() -> None:
    """Namespace B creating a model of the same name used to make A's clients' plain name `400
    model_ambiguous`; now the name stays with its holder and the newcomer is reached in full."""
    front, upstreams = door({"http://a": ScriptedResponse(chunks=(OK,)), "http://b": ScriptedResponse(chunks=(OK,))})
    model(front, "team-b/chat", "chat", {"http://b": "pod-b"}, created="2026-01-02T00:00:00Z")
    assert reached(front, upstreams, "chat") == "http://b"  # the only one
    # An older Deployment opts in (or renames its served name) today: the record keeps the name with B.
    front.table.recorded_names = {"chat": "team-b/chat"}
    model(front, "team-a/chat", "chat", {"http://a": "pod-a"}, created="2025-01-01T00:00:00Z")
    assert reached(front, upstreams, "chat") == "http://b"
    assert reached(front, upstreams, "team-a/chat") == "http://a"
    listed = asyncio.run(front.models(Request({"type": "http", "method": "GET", "headers": []})))
    ids = {m["hearth"]["deployment"]: m["id"] for m in json.loads(bytes(listed.body))["data"]}
    assert ids == {"team-b/chat": "chat", "team-a/chat": "team-a/chat"}
    # Before the record knows a name (a fresh install), it goes to the oldest claimant.
    front.table.recorded_names = {}
    assert reached(front, upstreams, "chat") == "http://a"
    unknown = post(front, {"model": "team-c/chat", **CHAT})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_a_served_name_with_a_slash_reaches_its_model_but_never_shadows_a_full_name() -> None:
    front, upstreams = door({"http://a": ScriptedResponse(chunks=(OK,)), "http://b": ScriptedResponse(chunks=(OK,))})
    model(front, "team-a/chat", "chat", {"http://a": "pod-a"})
    model(front, "team-b/qwen", "team-a/chat", {"http://b": "pod-b"})  # a served name that mimics a key
    assert reached(front, upstreams, "team-a/chat") == "http://a"
    model(front, "team-b/qwen", "Qwen/Qwen3-8B", {"http://b": "pod-b"})
    assert reached(front, upstreams, "Qwen/Qwen3-8B") == "http://b"


def test_max_held_bounds_the_requests_held_across_models() -> None:
    front, _ = door({}, max_held=1)
    model(front, "ns/one", "one", {})
    model(front, "ns/two", "two", {})

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(front))
        async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:
            first = asyncio.create_task(client.post("/v1/chat/completions", json={"model": "one", **CHAT}))
            while front.table.held_total == 0:  # noqa: ASYNC110 - yield (no timer) until the first is held
                await asyncio.sleep(0)
            second = await client.post("/v1/chat/completions", json={"model": "two", **CHAT})
            front.table.set_failure("ns/one", "its Deployment is Degraded")  # ends the first hold
            return await first, second

    first, second = asyncio.run(scenario())
    assert second.status_code == 429 and second.json()["error"]["code"] == "queue_full"
    assert first.status_code == 503 and first.json()["error"]["code"] == "model_start_failed"
    assert front.table.held_total == 0 and front.table.models["ns/one"].held == 0


@pytest.mark.parametrize("stream", ["false", "true", 0, 1, [], {}])
def test_a_stream_flag_that_is_not_a_boolean_is_refused(stream: Any) -> None:
    """OpenAI answers 400 to `"stream": "false"`; taken as truthy it would have streamed."""
    front, upstreams = door({"http://a": ScriptedResponse(chunks=(OK,))})
    model(front, "ns/chat", "chat", {"http://a": "pod-a"})
    answer = post(front, {"model": "chat", "stream": stream, **CHAT})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_type"
    assert "'stream'" in answer.json()["error"]["message"]
    assert upstreams.sent == []


@pytest.mark.parametrize("value", ["caf\u00e9 \u20ac", "a\x01b", "line\nbreak"])
def test_an_answer_whose_header_cannot_be_relayed_is_a_502_and_counts_nothing(value: str) -> None:
    """uvicorn refuses such a header at the first byte and drops the client; the front door answers a 502
    in OpenAI's shape instead, before sending anything, and gives the request's counts back."""
    response = ScriptedResponse(headers={"content-type": "application/json", "x-bad": value}, chunks=(OK,))
    front, _ = door({"http://a": response})
    model(front, "ns/chat", "chat", {"http://a": "pod-a"})
    answer = post(front, {"model": "chat", **CHAT})
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_bad_header"
    assert "x-bad" in answer.json()["error"]["message"]
    assert response.closed
    assert in_flight(front, "ns/chat") == (0, [0], 0.0)


def test_expect_100_continue_is_not_passed_to_the_backend() -> None:
    front, upstreams = door({"http://a": ScriptedResponse(chunks=(OK,))})
    model(front, "ns/chat", "chat", {"http://a": "pod-a"})

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(front))
        async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:
            body = {"model": "chat", **CHAT}
            return await client.post("/v1/chat/completions", json=body, headers={"Expect": "100-continue"})

    assert asyncio.run(call()).status_code == 200
    assert "expect" not in {name.lower() for name in upstreams.headers[-1]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
requests = st.fixed_dictionaries(
    {"model": json_values | st.sampled_from(["chat", "ns/chat", "ns/other", "chat/"])},
    optional={"stream": json_values | st.booleans(), "messages": json_values, "max_tokens": json_values},
).map(lambda v: json.dumps(v).encode())


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()) | requests,
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]),
)
def test_any_body_gets_an_answer_or_an_openai_error_and_leaves_nothing_counted(body: bytes, path: str) -> None:
    """The front door's request parsing, fuzzed in process (tests/test_gateway.py fuzzes the process): a
    request is relayed, or refused with a 4xx in OpenAI's shape; never a 5xx, never a count left behind."""
    front, upstreams = door({"http://a": ScriptedResponse(chunks=(OK,))})
    model(front, "ns/chat", "chat", {"http://a": "pod-a"})

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(front))
        async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:
            return await client.post(path, content=body, headers={"content-type": "application/json"})

    answer = asyncio.run(call())
    assert answer.status_code in (200, 400, 404), answer.text
    if answer.status_code != 200:
        error = answer.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error" and error["code"]
        assert not upstreams.sent  # nothing refused reached the backend
    else:
        payload = json.loads(body)
        assert upstreams.sent[0][1]["model"] == "chat" and payload.get("stream") in (None, True, False)
    assert in_flight(front, "ns/chat") == (0, [0], 0.0) and front.table.held_total == 0


def test_the_front_door_integrates_what_it_holds_and_relays(monkeypatch: pytest.MonkeyPatch) -> None:
    """busySeconds: held + in flight integrated over time, which the scaler's window averages, so requests
    that start and end between two of its ticks still count."""
    clock = [100.0]
    monkeypatch.setattr("gateway.table.time.monotonic", lambda: clock[0])
    table = ModelTable()
    state = table.upsert("ns/m", "m", ScaleSpec())
    state.busy_since = clock[0]
    state.enter()  # one in flight for 2 s
    clock[0] += 2
    Holding(table, state).enter()  # and one held: two for 1 s
    clock[0] += 1
    state.leave()  # one (the held one) for 3 s
    clock[0] += 3
    assert table.demand()["ns/m"]["busySeconds"] == 2 * 1 + 1 * 2 + 3 * 1
    assert table.demand()["ns/m"]["busySeconds"] == 7  # reading does not count twice


def test_upstream_health_is_read_sooner_while_requests_are_held() -> None:
    """In --upstream mode readiness comes from polling /health: every --health-interval (500 ms), and every
    --held-health-interval (50 ms) while a request waits for a model with no ready backend, so a start is
    noticed within 50 ms (it was up to 0.4 s late)."""
    table = ModelTable()
    static = StaticUpstreams(table, {"m": ["http://x"]}, ScaleSpec(), httpx.AsyncClient(), 0.5, 0.05)
    assert static.next_check() == 0.5
    held = Holding(table, table.models["local/m"])
    held.enter()
    assert static.next_check() == 0.05
    table.set_backends("local/m", {"http://x": "m-0"})
    assert static.next_check() == 0.5  # the held request is being served
    held.leave()
    table.set_backends("local/m", {})
    assert static.next_check() == 0.5


def test_a_metrics_port_that_is_the_api_port_is_refused() -> None:
    """One port for both sent every API call to the metrics app: 404 for /demand, 200 for /healthz."""
    with pytest.raises(ValueError, match="--metrics-port must differ from --port"):
        FrontDoorSettings(port=9090, metrics_port=9090)
    assert FrontDoorSettings(port=9090, metrics_port=0).metrics_port == 0
