"""The front door's one request path, in process: every lease is given back exactly once, every call's
outcome is counted exactly once, and a held call reaches the relay the way a direct one does.

Each scenario drives the real app (`create_app`) with scripted backends; the instruments count calls to
`Lease.release` per lease (the guard against a second release hides a second call, which these count),
to `Outcomes.finish`, and to the acquire step and the relay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from gateway import frontdoor, holding
from gateway.access import Outcomes
from gateway.frontdoor import FrontDoor, create_app
from gateway.lease import Lease
from gateway.relay import relay as real_relay
from gateway.routing import DRAINING_HEADER
from tests.gateway_fakes import ScriptedResponse
from tests.test_frontdoor import CHAT, OK, door, model

SSE_HEAD = {"content-type": "text/event-stream"}
EVENTS = (b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\n', b"data: [DONE]\n\n")


class Instruments:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.releases: dict[int, int] = {}
        self.finished = 0
        self.acquired: list[str] = []
        self.relayed: list[tuple[str, bool]] = []
        lease_init, lease_release = Lease.__init__, Lease.release
        finish = Outcomes.finish
        acquire = holding.Gate.acquire
        relay = real_relay

        def init(lease: Lease, *counted: Any) -> None:
            self.releases[id(lease)] = 0
            lease_init(lease, *counted)

        def release(lease: Lease) -> None:
            self.releases[id(lease)] += 1
            lease_release(lease)

        def finished(outcomes: Outcomes, *args: Any) -> None:
            self.finished += 1
            finish(outcomes, *args)

        async def acquired(gate: holding.Gate, call: Any) -> Any:
            self.acquired.append(call.state.key)
            return await acquire(gate, call)

        async def relayed(exchange: Any, answer: Any, **kwargs: Any) -> bytes:
            self.relayed.append((answer.source, exchange.begun))
            return await relay(exchange, answer, **kwargs)

        monkeypatch.setattr(Lease, "__init__", init)
        monkeypatch.setattr(Lease, "release", release)
        monkeypatch.setattr(Outcomes, "finish", finished)
        monkeypatch.setattr(holding.Gate, "acquire", acquired)
        monkeypatch.setattr(frontdoor, "relay", relayed)

    def each_lease_released_once(self) -> None:
        assert self.releases, "no lease was taken"
        assert sorted(set(self.releases.values())) == [1], self.releases


@pytest.fixture
def instruments(monkeypatch: pytest.MonkeyPatch) -> Iterator[Instruments]:
    yield Instruments(monkeypatch)


def requests_counted(front: FrontDoor) -> float:
    families = front.metrics.registry.collect()
    return sum(
        s.value for f in families if f.name == "hearth_gateway_requests" for s in f.samples if s.name.endswith("_total")
    )


def drive(
    front: FrontDoor, *calls: dict[str, Any], during: Callable[[], Awaitable[None]] | None = None
) -> list[httpx.Response]:
    """The calls, concurrently; `during` runs beside them (to make a model ready while they are held)."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(front))
        async with httpx.AsyncClient(transport=transport, base_url="http://door", timeout=10) as client:
            sent = [asyncio.ensure_future(client.post("/v1/chat/completions", json=c)) for c in calls]
            if during is not None:
                await during()
            return list(await asyncio.gather(*sent))

    return asyncio.run(run())


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - yields to the calls until they are where the test wants them
        await asyncio.sleep(0.01)


def test_a_direct_call_and_a_held_one_take_the_same_path_and_give_everything_back(instruments: Instruments) -> None:
    front, _ = door({"http://a": ScriptedResponse(headers=SSE_HEAD, chunks=EVENTS)})
    model(front, "ns/chat", "chat", {"http://a": "pod-a"})
    model(front, "ns/cold", "cold", {}, heartbeat_interval=0.05)

    async def wake() -> None:
        await until(lambda: front.table.models["ns/cold"].held == 2)
        await asyncio.sleep(0.12)  # a heartbeat or two while held
        front.table.set_backends("ns/cold", {"http://a": "pod-a"})

    stream = {"stream": True, **CHAT}
    direct, held_stream, held_whole = drive(
        front, {"model": "chat", **stream}, {"model": "cold", **stream}, {"model": "cold", **CHAT}, during=wake
    )
    assert direct.status_code == held_stream.status_code == held_whole.status_code == 200
    assert direct.content == b"".join(EVENTS)
    assert held_stream.content.startswith(b": hearth: model ns/cold is starting")
    assert held_stream.content.endswith(b"".join(EVENTS))
    # One acquire step and one relay for each, held or not: a held stream reaches it with its 200 begun.
    assert sorted(instruments.acquired) == ["ns/chat", "ns/cold", "ns/cold"]
    assert sorted(instruments.relayed) == [("pod-a", False), ("pod-a", False), ("pod-a", True)]
    instruments.each_lease_released_once()
    assert instruments.finished == 3 and requests_counted(front) == 3
    assert front.table.models["ns/cold"].held == 0 and front.table.models["ns/cold"].in_flight == 0
    assert front.table.models["ns/cold"].wake.out == 0


def test_refusals_and_failures_give_everything_back_and_count_once(instruments: Instruments) -> None:
    broken = aiohttp.ClientConnectionError("refused")
    draining = ScriptedResponse(503, {DRAINING_HEADER: "1"}, (b"{}",))
    bad_header = ScriptedResponse(headers={"x-bad": "caf\u00e9 \u20ac"}, chunks=(OK,))
    front, _ = door(
        {
            "http://dead": broken,
            "http://drain": draining,
            "http://bad": bad_header,
            "http://ok": ScriptedResponse(chunks=(OK,)),
        },
        max_held=1,
    )
    model(front, "ns/skips", "skips", {"http://dead": "dead", "http://drain": "drain", "http://ok": "ok"})
    model(front, "ns/bad", "bad", {"http://bad": "bad"})
    model(front, "ns/late", "late", {}, activation_timeout=0.2)
    model(front, "ns/full", "full", {}, queue_size=0)

    skips, bad, late, full = drive(front, *({"model": m, **CHAT} for m in ("skips", "bad", "late", "full")))
    assert skips.status_code == 200 and skips.content == OK
    assert bad.status_code == 502 and bad.json()["error"]["code"] == "upstream_bad_header"
    sample = front.metrics.registry.get_sample_value  # counted as what the client got, not the pod's 200
    assert sample("hearth_gateway_requests_total", {"model": "ns/bad", "code": "502"}) == 1.0
    assert late.status_code == 504 and late.json()["error"]["code"] == "activation_timeout"
    assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
    instruments.each_lease_released_once()
    assert instruments.finished == 4 and requests_counted(front) == 4
    for state in front.table.models.values():
        assert state.in_flight == 0 and state.held == 0 and state.wake.out == 0
        assert all(b.in_flight == 0 for b in state.backends.values())
    rejections = {
        (s.labels["model"], s.labels["reason"]): s.value
        for f in front.metrics.registry.collect()
        if f.name == "hearth_gateway_rejections"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert rejections == {("ns/late", "activation_timeout"): 1.0, ("ns/full", "queue_full"): 1.0}


class Client:
    """A raw ASGI client of the app: sends `body` at once, stays connected until `leave()`, keeps what it got."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.left = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self._messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

    async def receive(self) -> dict[str, Any]:
        if self._messages:
            return self._messages.pop()
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def call(self, front: FrontDoor) -> asyncio.Future[None]:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [(b"content-type", b"application/json")],
        }
        return asyncio.ensure_future(create_app(front)(scope, self.receive, self.send))  # type: ignore[arg-type]


def test_a_client_gone_mid_stream_cancels_its_answer_and_gives_everything_back(instruments: Instruments) -> None:
    gate = asyncio.Event()  # the rest of the answer never comes: only the client's leaving ends it
    front, _ = door({"http://a": ScriptedResponse(headers=SSE_HEAD, chunks=EVENTS, gate=gate)})
    model(front, "ns/chat", "chat", {"http://a": "pod-a"})

    async def scenario() -> None:
        client = Client({"model": "chat", "stream": True, **CHAT})
        call = client.call(front)
        await until(lambda: bool(client.sent))  # the head went out; the body waits on the backend
        assert front.table.models["ns/chat"].in_flight == 1
        client.left.set()
        await asyncio.wait_for(call, 5)
        assert client.sent[0]["status"] == 200

    asyncio.run(scenario())
    instruments.each_lease_released_once()
    assert instruments.finished == 1
    assert (
        front.metrics.registry.get_sample_value(
            "hearth_gateway_rejections_total", {"model": "ns/chat", "reason": "client_gone"}
        )
        == 1.0
    )
    assert front.table.models["ns/chat"].in_flight == 0


def test_a_client_gone_while_its_held_call_connects_gives_its_place_back(instruments: Instruments) -> None:
    """The turn a held call got must go back to the line when its client leaves during the attempt to reach
    the pod (it once did not: the window lost a place for good)."""
    front, upstreams = door({})
    model(front, "ns/cold", "cold", {})
    connecting = asyncio.Event()

    async def never_answers(method: str, url: str, body: bytes, headers: Any) -> Any:
        connecting.set()
        await asyncio.Event().wait()

    upstreams.open = never_answers  # type: ignore[method-assign]

    async def scenario() -> None:
        client = Client({"model": "cold", **CHAT})
        call = client.call(front)
        await until(lambda: front.table.models["ns/cold"].held == 1)
        front.table.set_backends("ns/cold", {"http://a": "pod-a"})
        await asyncio.wait_for(connecting.wait(), 5)
        assert front.table.models["ns/cold"].wake.out == 1
        client.left.set()
        await asyncio.wait_for(call, 5)

    asyncio.run(scenario())
    state = front.table.models["ns/cold"]
    assert state.wake.out == 0 and state.held == 0 and state.in_flight == 0
    instruments.each_lease_released_once()
    assert instruments.finished == 1
