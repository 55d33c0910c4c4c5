"""Real servers for tests: the `hearth` command started as a process, waited for, and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def big_head(size: int) -> bytes:
    return b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * size + b"\r\n\r\n"


def many_headers(count: int) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
        + b"".join(b"h%d: x\r\n" % i for i in range(count))
        + b"\r\n"
    )
