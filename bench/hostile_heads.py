"""Memory of each Hearth server under 100 concurrent hostile request heads, against its manifest limit.

    .venv/bin/python bench/hostile_heads.py [--clients 100]

Starts the webhook (TLS, runtimes from manifests/runtimes), a simulator, a sidecar in front of it and a
front door in front of the sidecar, then, against each server in turn, three attacks by `--clients`
concurrent connections: `huge` (a 16 MiB header, sent as fast as the server takes it), `many` (10,000
small headers) and `slow` (50 KiB of head, then silence until the server's head timeout closes it). It
prints each server's resident memory idle, its peak during each attack (VmHWM, reset before each
attack), how the server answered, and that it still serves afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import python, start
from certs import issue

ROOT = Path(__file__).resolve().parent.parent
RUNTIMES = ROOT / "manifests" / "runtimes"
HUGE = 16 * 1024 * 1024
LIMITS = {"webhook": "256Mi", "front door": "1Gi", "sidecar": "128Mi"}  # manifests/ and policies/render.py


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM back to the current RSS (Linux, as root)


def huge(conn: socket.socket) -> None:
    conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: ")
    piece = b"a" * 65536
    for _ in range(HUGE // len(piece)):
        conn.sendall(piece)
    conn.sendall(b"\r\n\r\n")


def many(conn: socket.socket) -> None:
    conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
    conn.sendall(b"".join(b"h%d: x\r\n" % i for i in range(10_000)) + b"\r\n")


def slow(conn: socket.socket) -> None:
    conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 50 * 1024)
    conn.settimeout(30)
    conn.recv(1)  # until the server's head timeout closes the connection


def attack(port: int, tls: ssl.SSLContext | None, send: Callable[[socket.socket], None]) -> str:
    """One hostile client: what the server answered (a status line, or how the connection ended)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            conn = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls is not None else raw
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
                send(conn)
            with contextlib.suppress(OSError):
                conn.settimeout(15)
                answer = conn.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")
                return answer.rsplit(" ", 2)[0] if answer else "closed"
            return "reset"
    except OSError as exc:
        return type(exc).__name__


def run_attack(
    pid: int, port: int, tls: ssl.SSLContext | None, send: Callable[[socket.socket], None], clients: int
) -> tuple[float, float, Counter[str]]:
    reset_peak(pid)
    answers: Counter[str] = Counter()
    lock = threading.Lock()
    started = time.monotonic()

    def one() -> None:
        result = attack(port, tls, send)
        with lock:
            answers[result] += 1

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return rss_mib(pid, "VmHWM"), time.monotonic() - started, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        issue(tmp / "tls", ["127.0.0.1"])
        tls = ssl.create_default_context(cafile=str(tmp / "tls" / "ca.crt"))
        hearth = [python(), "-m", "hearth", "--log-level=warning"]

        # name, port, health path, TLS, arguments after `hearth`; started in this order (each is the next's
        # upstream), attacked all but the simulator.
        local = "http://127.0.0.1"
        plan: list[tuple[str, int, str, ssl.SSLContext | None, list[str]]] = [
            ("webhook", 18611, "/healthz", tls, ["webhook", f"--cert-dir={tmp / 'tls'}", f"--runtimes={RUNTIMES}"]),
            (
                "simulator",
                18612,
                "/health",
                None,
                ["dev", "simulator", "--served-model-name=qwen", "--startup-duration=0s"],
            ),
            ("sidecar", 18613, "/ready", None, ["gateway", "sidecar", f"--upstream={local}:18612"]),
            ("front door", 18614, "/demand", None, ["gateway", "front-door", f"--upstream=qwen={local}:18613"]),
        ]
        servers: dict[str, tuple[int, int, str, ssl.SSLContext | None]] = {}
        for name, port, health, context, argv in plan:
            url = f"{'https' if context else 'http'}://127.0.0.1:{port}"
            proc = start(
                [*hearth, *argv, "--host=127.0.0.1", f"--port={port}"],
                url + health,
                context or False,
                tmp / f"{name}.log",
            )
            stack.callback(proc.terminate)
            if name != "simulator":
                servers[name] = (proc.pid, port, url + health, context)
        rows: list[dict[str, Any]] = []
        for name, (pid, port, health_url, context) in servers.items():
            idle = rss_mib(pid)
            row: dict[str, Any] = {"server": name, "idle_mib": round(idle, 1), "limit": LIMITS[name]}
            for kind, send in (("huge", huge), ("many", many), ("slow", slow)):
                peak, seconds, answers = run_attack(pid, port, context, send, args.clients)
                row[kind] = {"peak_mib": round(peak, 1), "seconds": round(seconds, 1), "answers": dict(answers)}
            row["serves_after"] = httpx.get(health_url, verify=context or False).status_code
            row["after_mib"] = round(rss_mib(pid), 1)
            rows.append(row)
    print(f"{args.clients} concurrent hostile heads per attack; peak = VmHWM during the attack\n")
    print("| server | limit | idle MiB | huge: peak MiB | many: peak MiB | slow: peak MiB | after MiB | serves after |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        peaks = " | ".join(f"{row[k]['peak_mib']:.1f}" for k in ("huge", "many", "slow"))
        print(
            f"| {row['server']} | {row['limit']} | {row['idle_mib']:.1f} | {peaks} | {row['after_mib']:.1f} | "
            f"{row['serves_after']} |"
        )
    for row in rows:
        answered = ", ".join(f"{k}: {row[k]['answers']}" for k in ("huge", "many", "slow"))
        print(f"{row['server']} answered {answered}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
