"""Broken backends reach the client as errors, never as success: answers cut off, streams cut in the
middle of an event or reset, malformed SSE, and pods that look ready but fail. A raw runtime on loopback
sends the broken bytes; the front door (alone, and behind a sidecar) relays them to the real OpenAI SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway_support import Proc, Processes, processes
from tests.servers import raw_runtime
from tests.test_gateway import CHAT, demand, sdk, wait_for

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

CHUNK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"qwen",'
    b'"choices":[{"index":0,"delta":{"content":"Hearth"},"finish_reason":null}]}\n\n'
)
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
WHOLE = b'{"id":"c1","object":"chat.completion","created":1,"model":"qwen","choices":[]}'


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as started:
        yield started


def runtime(url: str) -> Proc:
    return Proc(url=url, proc=None, log=Path())  # type: ignore[arg-type]


def through(procs: Processes, hops: str, url: str) -> Proc:
    """A front door in front of the raw runtime: directly, or through a sidecar as in a model pod."""
    backend = runtime(url) if hops == "door" else procs.sidecar(runtime(url))
    door = procs.front_door([("qwen", backend)])
    wait_for("the pod", lambda: demand(door)["readyPods"] == 1)
    return door


def settled(door: Proc) -> None:
    wait_for("counts back to zero", lambda: demand(door)["inFlight"] == 0 and demand(door)["held"] == 0)


CUT_ANSWERS = {
    "content-length": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n" + WHOLE[:30],
    "chunked": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n1e\r\n"
    + WHOLE[:30]
    + b"\r\n",
}


@pytest.mark.parametrize("hops", ["door", "sidecar"])
@pytest.mark.parametrize("framing", sorted(CUT_ANSWERS))
def test_an_answer_cut_off_is_a_connection_error_not_a_200(procs: Processes, hops: str, framing: str) -> None:
    """It used to reach the client as `200` with the truncated JSON."""
    with raw_runtime(CUT_ANSWERS[framing]) as url:
        door = through(procs, hops, url)
        with pytest.raises(openai.APIConnectionError):
            sdk(door).chat.completions.create(model="qwen", messages=CHAT)
        settled(door)
        with httpx.stream("POST", f"{door.url}/v1/chat/completions", json={"model": "qwen"}) as raw:
            assert raw.status_code == 200  # the head had been relayed: the abort is what tells the client
            with pytest.raises(httpx.RemoteProtocolError):
                raw.read()


BROKEN_STREAMS = {
    # bytes after the head, whether the runtime resets the connection, what the SDK's APIError may say (a
    # reset of a close-delimited answer is an error or an end, as the reads fall: either is caught)
    "cut in an event": (CHUNK + CHUNK[:40], False, ("broke off in the middle of an event",)),
    "cut in an event, reset": (CHUNK + CHUNK[:40], True, ("broke off",)),
    "ended without [DONE]": (CHUNK, False, ("ended before `data: [DONE]`",)),
    "reset between events": (CHUNK, True, ("broke off", "ended before `data: [DONE]`")),
    "data that is not JSON": (CHUNK + b"data: {not json\n\n", False, ("not JSON",)),
    "a line that is not SSE": (CHUNK + b"<html>502 Bad Gateway</html>\n\n", False, ("not SSE",)),
}


@pytest.mark.parametrize("hops", ["door", "sidecar"])
@pytest.mark.parametrize("case", sorted(BROKEN_STREAMS))
def test_a_broken_stream_ends_with_an_error_the_sdk_raises(procs: Processes, hops: str, case: str) -> None:
    """Whole events are relayed, then one OpenAI-shaped error event: the SDK raises APIError with a message
    (it used to fail on the error event glued to a partial line, or to end silently)."""
    sent, reset, messages = BROKEN_STREAMS[case]
    with raw_runtime(SSE_HEAD + sent, reset=reset) as url:
        door = through(procs, hops, url)
        tokens: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in sdk(door).chat.completions.create(model="qwen", messages=CHAT, stream=True):
                tokens.append(chunk.choices[0].delta.content or "")
        assert any(message in caught.value.message for message in messages), caught.value.message
        assert tokens == ["Hearth"]  # every whole event before the break reached the client
        settled(door)


def test_a_stream_relays_whole_events_only(procs: Processes) -> None:
    """On the wire: the partial event is dropped, the error event starts on a line of its own."""
    with raw_runtime(SSE_HEAD + CHUNK + CHUNK[:40]) as url:
        door = through(procs, "door", url)
        with httpx.stream("POST", f"{door.url}/v1/chat/completions", json={"model": "qwen", "stream": True}) as raw:
            text = raw.read()
    events = [e for e in text.split(b"\n\n") if e]
    assert events[0] + b"\n\n" == CHUNK
    error = json.loads(events[1].removeprefix(b"data: "))["error"]
    assert error["code"] == "stream_broken" and len(events) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_a_pod_that_looks_ready_but_fails_is_an_error_in_seconds(procs: Processes, stream: bool) -> None:
    """`/health` answers 200, every request is dropped before a byte: tried a few times with backoff, then
    a 502 (it used to hold the request for the whole activation timeout, 10 minutes by default)."""
    with raw_runtime(b"", reset=True) as url:
        door = through(procs, "door", url)
        started = time.monotonic()
        with pytest.raises(openai.APIError) as caught:
            answer = sdk(door).chat.completions.create(model="qwen", messages=CHAT, stream=stream)
            list(answer)
        assert "failed 3 times before answering" in caught.value.message
        if not stream:
            assert isinstance(caught.value, openai.APIStatusError) and caught.value.status_code == 502
        assert time.monotonic() - started < 15
        settled(door)
