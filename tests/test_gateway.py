"""The gateway with real servers: simulator, sidecar and front door as processes, the real OpenAI SDK."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam

from tests.gateway_support import Proc, Processes, processes

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as started:
        yield started


def sdk(door: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{door.url}/v1", api_key="unused", max_retries=0, timeout=60)


def demand(door: Proc) -> dict[str, float]:
    models: dict[str, dict[str, float]] = httpx.get(f"{door.url}/demand").json()["models"]
    return models["local/qwen"]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_metrics_answer_on_their_own_port_only(procs: Processes) -> None:
    """/metrics names every model (and, with keys, every key Secret): it used to answer anyone who reached
    the API port. The API port answers it 404 as any unknown route; the metrics port serves nothing else."""
    door = procs.front_door([("qwen", procs.simulator())])
    refused = httpx.get(f"{door.url}/metrics")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "unknown_url"
    assert "hearth_gateway_" in httpx.get(f"{door.metrics_url}/metrics").text
    assert httpx.get(f"{door.metrics_url}/healthz").status_code == 200
    assert httpx.get(f"{door.metrics_url}/v1/models").status_code == 404
    assert httpx.get(f"{door.url}/v1/models").json()["data"][0]["id"] == "qwen"


def test_cold_start_stream_completes_through_the_hold(procs: Processes) -> None:
    door = procs.door_then_simulator("3s", itl="10ms")
    chunks = list(sdk(door).chat.completions.create(model="qwen", messages=CHAT, stream=True, max_tokens=8))
    metrics = httpx.get(f"{door.metrics_url}/metrics").text
    assert 'hearth_gateway_activation_wait_seconds_count{model="local/qwen"} 1.0' in metrics  # it really was held
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hearth keeps idle GPUs at zero and wakes"  # every token, nothing else (no heartbeat)
    assert chunks[-1].choices[0].finish_reason == "length"
    counts = demand(door)
    assert counts.pop("busySeconds") > 0  # held, then streamed: time the scaler's window counts
    assert counts == {"held": 0, "inFlight": 0, "readyPods": 1, "started": 1}


def test_raw_stream_shows_heartbeat_comments_during_the_hold(procs: Processes) -> None:
    door = procs.door_then_simulator("2s")
    request = {"model": "qwen", "messages": CHAT, "stream": True, "max_tokens": 2}
    with httpx.stream("POST", f"{door.url}/v1/chat/completions", json=request, timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    comments = [line for line in lines if line.startswith(":")]
    data = [line for line in lines if line.startswith("data: ")]
    assert len(comments) >= 2  # the first at once, then one every 0.5 s
    assert lines.index(comments[-1]) < lines.index(data[0])  # heartbeats come before the tokens
    assert data[-1] == "data: [DONE]"


def test_sdk_sync_and_async_streaming_and_not(procs: Processes) -> None:
    door = procs.door_then_simulator("1s")
    client = sdk(door)
    reply = client.chat.completions.create(model="qwen", messages=CHAT, max_tokens=4)  # held, not streaming
    assert reply.choices[0].message.content == "Hearth keeps idle GPUs"
    text = client.completions.create(model="qwen", prompt="hi", max_tokens=3).choices[0].text
    assert text == "Hearth keeps idle"

    async def run() -> tuple[str, str]:
        async_client = openai.AsyncOpenAI(base_url=f"{door.url}/v1", api_key="unused", max_retries=0)
        stream = await async_client.chat.completions.create(model="qwen", messages=CHAT, stream=True, max_tokens=3)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        whole = await async_client.chat.completions.create(model="qwen", messages=CHAT, max_tokens=2)
        await async_client.close()
        return streamed, whole.choices[0].message.content or ""

    assert asyncio.run(run()) == ("Hearth keeps idle", "Hearth keeps")
    models = [m.id for m in client.models.list()]
    assert models == ["qwen"]


def test_start_failure_reaches_the_sdk_as_an_api_error(procs: Processes) -> None:
    sim = procs.simulator(fail_start=True)
    door = procs.front_door([("qwen", sim)])
    # Sent before or after a health check has seen the 500: a held request fails as soon as it is seen.
    retrying = openai.OpenAI(base_url=f"{door.url}/v1", api_key="unused", max_retries=2, timeout=60)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        retrying.chat.completions.create(model="qwen", messages=CHAT, max_tokens=2)
    assert caught.value.status_code == 503 and "failed to start" in caught.value.message
    # It will not heal by itself: no Retry-After, and the SDK is told not to retry (it retried twice, 30 s
    # apart, before the user saw the error).
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in caught.value.response.headers
    assert time.monotonic() - started < 30
    metrics = httpx.get(f"{door.metrics_url}/metrics").text
    assert 'hearth_gateway_requests_total{code="503",model="local/qwen"} 1.0' in metrics, metrics


def test_start_failure_during_a_held_stream_is_an_sse_error(procs: Processes) -> None:
    door = procs.door_then_simulator("3s", fail_start=True)  # loads for 3 s, then its engine is dead
    with pytest.raises(openai.APIError) as caught:
        list(sdk(door).chat.completions.create(model="qwen", messages=CHAT, stream=True, max_tokens=2))
    assert "model local/qwen failed to start: its /health answered 500" in caught.value.message
    assert not isinstance(caught.value, openai.APIStatusError)  # raised from the SSE error event, after a 200
    assert demand(door)["held"] == 0


def test_hold_timeout_reaches_the_sdk(procs: Processes) -> None:
    sim = procs.simulator(startup="60s")
    door = procs.front_door([("qwen", sim)], "--activation-timeout=1500ms")
    with pytest.raises(openai.APIError) as caught:
        list(sdk(door).chat.completions.create(model="qwen", messages=CHAT, stream=True, max_tokens=2))
    assert "did not become ready within 1.5s" in caught.value.message
    with pytest.raises(openai.APIStatusError) as status:
        sdk(door).chat.completions.create(model="qwen", messages=CHAT, max_tokens=2)
    assert status.value.status_code == 504 and status.value.response.headers["retry-after"]
    assert demand(door)["held"] == 0


def test_a_backend_silent_past_the_idle_stream_timeout_ends_the_stream_with_an_error_event(procs: Processes) -> None:
    sim = procs.simulator(itl="3s")  # a token every 3 s
    door = procs.front_door([("qwen", sim)], "--idle-stream-timeout=1s")
    with pytest.raises(openai.APIError) as caught:
        list(sdk(door).chat.completions.create(model="qwen", messages=CHAT, stream=True, max_tokens=3))
    assert "the model's stream broke off" in caught.value.message
    counts = demand(door)
    assert counts.pop("busySeconds") > 0
    assert counts == {"held": 0, "inFlight": 0, "readyPods": 1, "started": 1}


def test_full_queue_answers_429_and_disturbs_nothing(procs: Processes) -> None:
    door = procs.door_then_simulator("2s", "--queue-size=2")
    results: list[str] = []

    def held() -> None:
        reply = sdk(door).chat.completions.create(model="qwen", messages=CHAT, max_tokens=2)
        results.append(reply.choices[0].message.content or "")

    threads = [threading.Thread(target=held) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for("two held requests", lambda: demand(door)["held"] == 2)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(door).chat.completions.create(model="qwen", messages=CHAT, max_tokens=2)
    assert caught.value.response.headers["retry-after"] == "5"
    assert "too many requests are waiting" in caught.value.message
    for thread in threads:
        thread.join(timeout=30)
    assert results == ["Hearth keeps", "Hearth keeps"]


def test_drain_finishes_open_streams_and_moves_new_work(procs: Processes) -> None:
    sim_a, sim_b = procs.simulator(itl="100ms"), procs.simulator(itl="10ms")
    side_a, side_b = procs.sidecar(sim_a), procs.sidecar(sim_b)
    door = procs.front_door([("qwen", side_a), ("qwen", side_b)])
    wait_for("both pods ready", lambda: demand(door)["readyPods"] == 2)
    texts: list[str] = []

    def stream_on_a() -> None:
        request = {"model": "qwen", "messages": CHAT, "stream": True, "max_tokens": 20}
        with httpx.stream("POST", f"{side_a.url}/v1/chat/completions", json=request, timeout=30) as response:
            body = "".join(response.iter_text())
        texts.append(body)

    threads = [threading.Thread(target=stream_on_a) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for("two streams open on pod A", lambda: httpx.get(f"{side_a.url}/demand").json()["inFlight"] == 2)
    side_a.proc.send_signal(signal.SIGTERM)
    wait_for("pod A to turn unready", lambda: httpx.get(f"{side_a.url}/ready").status_code == 503)
    # New work goes elsewhere: pod A answers 503 + draining, the front door retries on pod B.
    reply = sdk(door).chat.completions.create(model="qwen", messages=CHAT, max_tokens=2)
    assert reply.choices[0].message.content == "Hearth keeps"
    for thread in threads:
        thread.join(timeout=30)
    assert len(texts) == 2 and all(t.count("data: ") == 22 and t.rstrip().endswith("data: [DONE]") for t in texts)
    side_a.proc.wait(timeout=20)  # its drain timeout is 30 s: it left because nothing was open any more
    assert "drain complete; exiting" in side_a.log.read_text()


def test_a_front_door_stopped_mid_stream_lets_a_long_stream_finish(procs: Processes) -> None:
    """A rolling upgrade of the front doors: SIGTERM while a stream of ~12 s is relayed. New connections are
    refused at once, the open stream runs to its end, then the process exits (a graceful shutdown of 10 s
    once cut every longer answer)."""
    door = procs.front_door([("qwen", procs.sidecar(procs.simulator(itl="100ms")))])
    texts: list[str] = []

    def long_stream() -> None:
        request = {"model": "qwen", "messages": CHAT, "stream": True, "max_tokens": 120}
        with httpx.stream("POST", f"{door.url}/v1/chat/completions", json=request, timeout=60) as response:
            texts.append("".join(response.iter_text()))

    streaming = threading.Thread(target=long_stream)
    streaming.start()
    wait_for("the stream to be relayed", lambda: demand(door)["inFlight"] == 1)
    stopped = time.monotonic()
    door.proc.send_signal(signal.SIGTERM)
    wait_for("new connections refused", lambda: _refused(door.url))
    streaming.join(timeout=60)
    assert len(texts) == 1 and texts[0].count("data: ") == 122 and texts[0].rstrip().endswith("data: [DONE]")
    assert time.monotonic() - stopped > 10  # it outlived the old 10 s limit
    door.proc.wait(timeout=20)  # and left once nothing was open


def _refused(url: str) -> bool:
    """Not served: refused, or (a connection the kernel queued as the listener closed) shut or reset
    unanswered (the reset seen once in CI with four process-tier workers: a ReadError)."""
    try:
        httpx.get(f"{url}/healthz", timeout=1)
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
        return True
    return False


def test_sidecar_without_open_streams_exits_at_once(procs: Processes) -> None:
    side = procs.sidecar(procs.simulator(), drain_timeout="60s")
    side.proc.send_signal(signal.SIGTERM)
    side.proc.wait(timeout=20)  # well before its 60 s drain timeout, which it did not wait out
    assert "drain complete; exiting" in side.log.read_text()


def _sim_outcomes(sim: Proc) -> dict[str, float]:
    outcomes: dict[str, float] = httpx.get(f"{sim.url}/sim/stats").json()["outcomes"]
    return outcomes


def test_client_that_vanishes_while_held_leaves_the_queue(procs: Processes) -> None:
    sim = procs.simulator(startup="60s")
    door = procs.front_door([("qwen", sim)])
    for stream in (True, False):
        request = {"model": "qwen", "messages": CHAT, "stream": stream, "max_tokens": 2}
        body = json.dumps(request).encode()
        with socket.create_connection(("127.0.0.1", int(door.url.rsplit(":", 1)[1]))) as raw:
            raw.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            wait_for("the request to be held", lambda: demand(door)["held"] == 1)
        # The model takes 60 s to start: a hold that ends now was dropped for its client.
        wait_for("the hold to be dropped", lambda: demand(door)["held"] == 0, timeout=20)
    assert (
        'hearth_gateway_rejections_total{model="local/qwen",reason="client_gone"} 2.0'
        in httpx.get(f"{door.metrics_url}/metrics").text
    )


def test_client_that_vanishes_mid_stream_cancels_the_upstream(procs: Processes) -> None:
    sim = procs.simulator(itl="100ms")
    side = procs.sidecar(sim)
    door = procs.front_door([("qwen", side)])
    wait_for("the pod", lambda: demand(door)["readyPods"] == 1)
    request = {"model": "qwen", "messages": CHAT, "stream": True, "max_tokens": 100}
    with httpx.stream("POST", f"{door.url}/v1/chat/completions", json=request, timeout=30) as response:
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
    wait_for("the simulator to see the request cancelled", lambda: _sim_outcomes(sim).get("cancelled") == 1.0, 3)
    wait_for("counters back to zero", lambda: demand(door)["inFlight"] == 0, 2)
    assert httpx.get(f"{side.url}/demand").json()["inFlight"] == 0


def test_backend_errors_pass_through_with_their_status(procs: Processes) -> None:
    sim = procs.simulator()
    door = procs.front_door([("qwen", sim)])
    wait_for("the pod", lambda: demand(door)["readyPods"] == 1)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(door).chat.completions.create(model="qwen", messages=CHAT, max_tokens=-1)
    assert "max_tokens must be a positive integer" in caught.value.message


def test_backend_error_after_a_committed_stream_is_an_error_event(procs: Processes) -> None:
    door = procs.door_then_simulator("1s")
    with pytest.raises(openai.APIError) as caught:  # held (200 sent), then the runtime refuses the request
        list(sdk(door).chat.completions.create(model="qwen", messages=CHAT, stream=True, max_tokens=-1))
    assert "max_tokens must be a positive integer" in caught.value.message


def test_hostile_inputs_get_clear_errors_and_leak_nothing(procs: Processes) -> None:
    sim = procs.simulator()
    door = procs.front_door([("qwen", sim)], "--max-body-bytes=100000", "--body-timeout=1s", "--header-timeout=1s")
    wait_for("the pod", lambda: demand(door)["readyPods"] == 1)
    post = f"{door.url}/v1/chat/completions"
    cases = [
        (httpx.post(post, content=b"{not json"), 400, "not valid JSON"),
        (httpx.post(post, json=["model"]), 400, "string `model`"),
        (httpx.post(post, json={"model": "nope", "messages": CHAT}), 404, "does not exist; known: qwen"),
        (httpx.post(post, content=b"x" * 200_000), 413, "exceeds 100000 bytes"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status
        assert fragment in response.json()["error"]["message"]
    port = int(door.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as slow_body:  # declares a body, never sends it
        slow_body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{")
        slow_body.settimeout(5)
        assert b"408" in slow_body.recv(4096).split(b"\r\n")[0]
    with socket.create_connection(("127.0.0.1", port)) as slow_head:  # never finishes its headers
        slow_head.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        slow_head.settimeout(5)
        started = time.monotonic()
        assert slow_head.recv(4096) == b""  # closed by the server
        assert time.monotonic() - started < 3
    # None was a request: nothing started, no time in flight.
    assert demand(door) == {"held": 0, "inFlight": 0, "readyPods": 1, "started": 0, "busySeconds": 0}
    text = httpx.get(f"{door.metrics_url}/metrics").text
    assert 'code="5' not in text


def test_reject_mode_answers_at_once_and_still_activates(procs: Processes) -> None:
    import http.server

    pushes: list[bytes] = []

    class Scaler(http.server.BaseHTTPRequestHandler):  # stands in for the scaler's /activate
        def do_POST(self) -> None:
            pushes.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scaler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sim = procs.simulator(startup="60s")
        door = procs.front_door(
            [("qwen", sim)], "--cold-start=reject", f"--scaler-url=http://127.0.0.1:{server.server_address[1]}"
        )
        with pytest.raises(openai.APIStatusError) as caught:  # at once: a held request would wait 60 s
            sdk(door).chat.completions.create(model="qwen", messages=CHAT, max_tokens=2, timeout=20)
        assert caught.value.status_code == 503 and caught.value.response.headers["retry-after"] == "30"
        assert "is starting from zero; retry shortly" in caught.value.message
        assert demand(door)["held"] == 0
        wait_for("the activation push", lambda: pushes == [b'{"model":"local/qwen"}'], timeout=3)
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def steady_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with processes(tmp_path_factory.mktemp("steady")) as started:
        door = started.front_door([("qwen", started.simulator())], "--max-body-bytes=20000")
        wait_for("the pod", lambda: demand(door)["readyPods"] == 1)
        yield door


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
bodies = (
    st.binary(max_size=400)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries(
        {
            "model": st.text(max_size=20) | st.just("qwen"),
            "messages": json_values,
            "stream": json_values,
            "max_tokens": json_values,
        }
    ).map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
def test_hostile_bodies_never_get_a_5xx_from_the_gateway(steady_door: Proc, body: bytes, path: str) -> None:
    response = httpx.post(f"{steady_door.url}{path}", content=body, timeout=30)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["message"]
    assert demand(steady_door)["inFlight"] == 0 and demand(steady_door)["held"] == 0


def test_a_backend_header_the_server_cannot_send_is_a_502_through_both_hops(procs: Processes) -> None:
    """A runtime answers with a UTF-8 header value (uvicorn sends Latin-1 only and used to drop the client,
    leaving the request counted in flight): the client gets a 502 in OpenAI's shape, nothing stays counted."""
    import http.server

    class Runtime(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # /health
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = b'{"choices": []}'
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
            self.wfile.write("x-bad: caf\u00e9 \u20ac\r\n".encode())
            self.wfile.write(b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        runtime = Proc(url=f"http://127.0.0.1:{server.server_address[1]}", proc=None, log=Path())  # type: ignore[arg-type]
        side = procs.sidecar(runtime)
        door = procs.front_door([("qwen", side)])
        wait_for("the pod", lambda: demand(door)["readyPods"] == 1)
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(door).chat.completions.create(model="qwen", messages=CHAT, max_tokens=2)
        assert caught.value.status_code == 502 and "cannot be relayed" in caught.value.message
        assert demand(door)["inFlight"] == 0
        assert httpx.get(f"{side.url}/demand").json()["inFlight"] == 0
    finally:
        server.shutdown()


def test_request_heads_are_bounded_on_the_front_door_and_the_sidecar(procs: Processes) -> None:
    """Envoy's defaults: over 60 KiB of head is a 431, over 100 headers a 400, and the connection closes;
    nothing reaches the runtime (16 MiB headers used to push each server past its memory limit)."""
    from tests.servers import big_head, many_headers, send_head, send_part_of_a_body

    sim = procs.simulator()
    side = procs.sidecar(sim)
    door = procs.front_door([("qwen", side)])
    wait_for("the pod", lambda: demand(door)["readyPods"] == 1)
    for server in (door, side):
        assert send_head(server.url, big_head(16 * 1024 * 1024)).startswith(b"HTTP/1.1 431")
        assert send_head(server.url, big_head(70 * 1024)).startswith(b"HTTP/1.1 431")
        assert send_head(server.url, many_headers(10_000)).startswith(b"HTTP/1.1 431")  # 10,000 is over 60 KiB too
        assert send_head(server.url, many_headers(101)).startswith(b"HTTP/1.1 400")
    assert sum(_sim_outcomes(sim).values()) == 0  # no completion reached the runtime
    # Only the head counts, also when its end and 100 KiB of body arrive in the read after it.
    port = int(door.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as split:
        split.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 102400\r\n\r")
        time.sleep(0.2)  # two reads on the server's side (what is measured is the status, not the time)
        split.sendall(b"\n" + b"x" * 102400)
        assert split.recv(4096).startswith(b"HTTP/1.1 400")  # read whole: not JSON
    side_of_one_second = procs.sidecar(sim, "30s", "--body-timeout=1s")
    assert send_part_of_a_body(side_of_one_second.url, "/v1/chat/completions") == b"HTTP/1.1 408 Request Timeout"
    for server in (door, side):  # within the bounds a head is taken (its empty body is then refused)
        assert send_head(server.url, many_headers(90)).startswith(b"HTTP/1.1 4")
    reply = sdk(door).chat.completions.create(model="qwen", messages=CHAT, max_tokens=2)  # still serving
    assert reply.choices[0].message.content == "Hearth keeps"
    assert sum(_sim_outcomes(sim).values()) == 1  # (the count does count completions)


def test_json_keepalive_sends_spaces_while_held_then_the_answer(procs: Processes) -> None:
    """Behind a proxy that drops a connection silent for 60 s, a whole-answer request held through a long
    load would fail: with --json-keepalive (hearth.dev/json-keepalive) it gets a 200 at once and a space
    every heartbeat, then the answer, which JSON parsers (and the OpenAI SDK) read past the spaces."""
    door = procs.door_then_simulator("2s", "--json-keepalive")
    body = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    started = time.monotonic()
    with httpx.stream("POST", f"{door.url}/v1/chat/completions", json=body, timeout=30) as raw:
        assert raw.status_code == 200 and raw.headers["content-type"] == "application/json"
        chunks = [(time.monotonic() - started, chunk) for chunk in raw.iter_raw()]
    text = b"".join(chunk for _, chunk in chunks)
    assert chunks[0][0] < 1.0 and chunks[0][1].isspace()  # the first byte comes at once, not with the answer
    assert text.startswith(b"  ")  # the opening space and at least one heartbeat (every 500 ms, 2 s held)
    assert json.loads(text)["choices"][0]["message"]["content"] == "Hearth keeps"
    answer = sdk(door).chat.completions.create(model="qwen", messages=CHAT, max_tokens=2)
    assert answer.choices[0].message.content == "Hearth keeps"


def test_json_keepalive_reports_a_failed_start_in_the_body_of_its_200(procs: Processes) -> None:
    """The trade-off of committing the status early: a hold that fails can only say so in the body."""
    door = procs.door_then_simulator("2s", "--json-keepalive", fail_start=True)
    body = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{door.url}/v1/chat/completions", json=body, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["error"]["code"] == "model_start_failed"
    assert demand(door)["held"] == 0


def wav(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    """A small generated recording: a 440 Hz tone, 16-bit mono PCM in a WAV container."""
    import io
    import math
    import struct
    import wave

    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(rate)
        recording.writeframes(frames)
    return out.getvalue()


def test_the_openai_surface_vllm_serves_is_held_at_zero_and_routed(procs: Processes) -> None:
    """Embeddings, responses, rerank, score and an audio transcription (a multipart form whose `model` is a
    field) through the front door and a sidecar, with the real SDK, the first held while the model loads; a
    model retrieved by id; errors and unknown routes in OpenAI's shape. (Renaming to the served name, JSON
    and form alike: tests/test_auth.py, tests/test_calls.py.)"""
    sim = procs.simulator(startup="6s")  # longer than a sidecar and a front door take to start: it is held
    door = procs.front_door([("qwen", procs.sidecar(sim))])
    client = sdk(door)
    embedded = client.embeddings.create(model="qwen", input=["a cat", "a dog"])  # held: the model loads
    assert [e.index for e in embedded.data] == [0, 1] and len(embedded.data[0].embedding) == 8
    metrics = httpx.get(f"{door.metrics_url}/metrics").text
    assert 'hearth_gateway_activation_wait_seconds_count{model="local/qwen"} 1.0' in metrics  # it was held
    answered = client.responses.create(model="qwen", input="hi", max_output_tokens=3)
    assert answered.output_text == "Hearth keeps idle"
    # A streamed response ends at response.completed, with no `data: [DONE]` (as vLLM sends it): relayed
    # whole, with no error event appended.
    events = list(client.responses.create(model="qwen", input="hi", max_output_tokens=3, stream=True))
    assert [e.type for e in events] == ["response.created", *["response.output_text.delta"] * 3, "response.completed"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hearth keeps idle"
    transcript = client.audio.transcriptions.create(model="qwen", file=("tone.wav", wav(), "audio/wav"))
    assert transcript.text.startswith("Hearth keeps idle GPUs")  # one word per KiB: the whole file came
    reranked = httpx.post(
        f"{door.url}/v1/rerank",
        json={"model": "qwen", "query": "a cat", "documents": ["a dog", "a cat sat"]},
    ).json()
    assert [r["index"] for r in reranked["results"]] == [1, 0]
    scored = httpx.post(f"{door.url}/v1/score", json={"model": "qwen", "text_1": "a cat", "text_2": ["a cat"]})
    assert scored.json()["data"][0]["object"] == "score"
    retrieved = client.models.retrieve("qwen")
    assert retrieved.id == "qwen" and retrieved.created > 0
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("nope")
    assert missing.value.code == "model_not_found"
    unknown = httpx.post(f"{door.url}/v1/nothing", json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"


def test_keys_from_a_file_guard_upstream_models_outside_a_cluster(procs: Processes, tmp_path: Path) -> None:
    key = "sk-file-key-0123456789abcdef"
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bench\n  namespace: local\n"
        f"  labels: {{hearth.dev/api-key: 'true'}}\nstringData:\n  key: {key}\n"
    )
    door = procs.front_door([("qwen", procs.simulator())], f"--api-keys={keys}")
    with pytest.raises(openai.AuthenticationError):
        sdk(door).models.list()
    keyed = openai.OpenAI(base_url=f"{door.url}/v1", api_key=key, max_retries=0, timeout=60)
    assert keyed.chat.completions.create(model="qwen", messages=CHAT, max_tokens=2).choices[0].message.content
    assert [m.id for m in keyed.models.list()] == ["qwen"]
    log = door.log.read_text()
    assert '"key":"local/bench","model":"local/qwen"' in log and key not in log
