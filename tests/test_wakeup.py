"""A cold start with many held streams, through a real front door process: the held requests reach the
new replica in the order they arrived, a window at a time (the model's target per replica), and the
window opens as answers start (gateway.wake)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import Popen

import httpx
import pytest

from tests.gateway_support import Proc, processes

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

PREFILL = 0.2  # the runtime's time to first token: long enough that a herd would all be in before one answer
CLIENTS = 30
TARGET = 10  # the --upstream models' default hearth.dev/target


class Runtime:
    """A runtime on loopback that is loading until `ready` is set, and records for every completion the
    client it came from (the `x-client` header) and how many answers had started when it arrived."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.arrivals: list[tuple[int, int]] = []
        self.started = 0


@contextmanager
def runtime() -> Iterator[tuple[Runtime, str]]:
    state = Runtime()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200 if state.ready.is_set() else 503)
            self.end_headers()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            with state.lock:
                state.arrivals.append((int(self.headers["x-client"]), state.started))
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            time.sleep(PREFILL)
            with state.lock:
                state.started += 1
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": "hi"}}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default backlog of 5 drops a window's connections

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_held_streams_reach_the_new_replica_in_arrival_order_a_window_at_a_time(tmp_path: Path) -> None:
    with runtime() as (state, url), processes(tmp_path) as procs:
        upstream = Proc(url, Popen(["true"]), tmp_path / "runtime.log")
        door = procs.front_door([("qwen", upstream)], f"--queue-size={CLIENTS}", "--held-health-interval=20ms")
        done: list[str] = []

        def client(number: int) -> None:
            body = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            headers = {"x-client": str(number)}
            with httpx.stream("POST", f"{door.url}/v1/chat/completions", json=body, headers=headers, timeout=60) as r:
                text = "".join(r.iter_text())
            done.append(text)

        def held() -> int:
            return int(httpx.get(f"{door.url}/demand").json()["models"]["local/qwen"]["held"])

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for count, thread in enumerate(threads, 1):  # each held before the next is sent: a known order
            thread.start()
            deadline = time.monotonic() + 10
            while held() < count and time.monotonic() < deadline:
                time.sleep(0.005)
            assert held() == count
        state.ready.set()
        for thread in threads:
            thread.join(timeout=60)
        assert len(done) == CLIENTS and all("data: [DONE]" in text for text in done)
    # A window's requests go together, so they race to the runtime; the windows come in arrival order.
    order = [number for number, _ in state.arrivals]
    assert sorted(order[:TARGET]) == list(range(TARGET)), order
    assert sorted(order[TARGET:]) == list(range(TARGET, CLIENTS)), order
    started_when_arrived = [started for _, started in state.arrivals]
    assert started_when_arrived[:TARGET] == [0] * TARGET, started_when_arrived  # the first window at once...
    assert min(started_when_arrived[TARGET:]) >= 1, started_when_arrived  # ...the rest as answers started
