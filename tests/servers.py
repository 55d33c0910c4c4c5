"""Real servers for tests: the `hearth` command started as a process, waited for, and stopped."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

PORTS_PER_WORKER = 4000  # pytest-xdist workers draw from ranges of their own, below the kernel's ephemeral range
_HANDED_OUT: set[int] = set()  # this process's ports so far: two drawn before either is bound must differ


def free_port() -> int:
    """A port free on loopback now. Each pytest-xdist worker draws from a range of its own (12000-15999 for
    gw0, 16000-19999 for gw1, ...): a port one worker found free and has not bound yet is never handed to
    another, and the kernel never picks these for outgoing connections. Nor is one handed out twice in a
    process: a front door's --port and --metrics-port, drawn together, were once the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    low = 12000 + PORTS_PER_WORKER * index
    for _ in range(200):
        port = random.randrange(low, low + PORTS_PER_WORKER)
        if port in _HANDED_OUT:
            continue
        _HANDED_OUT.add(port)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{low + PORTS_PER_WORKER - 1}")


def tls_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def wait_until_healthy(
    url: str, verify: ssl.SSLContext | bool, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, verify=verify, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def hearth_process(
    args: list[str], health_url: str, verify: ssl.SSLContext | bool, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hearth", *args], stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
    try:
        wait_until_healthy(health_url, verify, proc, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def send_head(url: str, head: bytes, tls: ssl.SSLContext | None = None) -> bytes:
    """Send raw bytes of a request head to a server and return its status line ("" if it just closed)."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        conn = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed before it all went
            conn.sendall(head)
        try:
            answer = conn.recv(4096)
        except ConnectionResetError:
            answer = b""
        return answer.split(b"\r\n", 1)[0]


def send_part_of_a_body(url: str, path: str, tls: ssl.SSLContext | None = None) -> bytes:
    """Declare a 50-byte body, send one byte of it, and return the status line the server answers with."""
    return send_head(url, f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{{".encode(), tls)


def big_head(size: int) -> bytes:
    return b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * size + b"\r\n\r\n"


def many_headers(count: int) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
        + b"".join(b"h%d: x\r\n" % i for i in range(count))
        + b"\r\n"
    )


@contextmanager
def raw_runtime(answer: bytes, *, reset: bool = False) -> Iterator[str]:
    """A runtime on loopback that answers `GET /health` 200 and every POST with `answer`, raw bytes (head
    and body, however broken), then closes the connection: with a reset when `reset`. Yields its URL."""

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a client that resets its end
            reader = conn.makefile("rb")
            while True:
                request = reader.readline()
                if not request:
                    return
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                reader.read(length)
                if request.startswith(b"GET"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    continue
                conn.sendall(answer)
                if reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()
