"""Daemon processes of a dev cluster: started detached with a log file, found again by a marker in their
environment (so `hearth dev down` leaves nothing behind, even processes that a crashed agent started),
waited for by a health check that prints the tail of the log when it fails."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

MARKER = "HEARTH_DEV_CLUSTER"


class StartError(RuntimeError):
    pass


def start(name: str, argv: list[str], log_dir: Path, cluster_id: str, env: dict[str, str] | None = None) -> int:
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {}), MARKER: cluster_id},
        )
    return proc.pid


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for(name: str, check: Callable[[], bool], pid: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise StartError(f"{name} exited during start-up. Last lines of {log}:\n{tail(log)}")
        if check():
            return
        time.sleep(0.2)
    raise StartError(f"{name} was not healthy after {timeout:.0f}s. Last lines of {log}:\n{tail(log)}")


def url_ok(url: str, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    """A health check: True while `url` answers 200 (https URLs verified with `context`)."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as response:  # noqa: S310 - our own URL
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return check


def marked(cluster_id: str) -> list[int]:
    """Every process whose environment carries this cluster's marker."""
    needle = f"{MARKER}={cluster_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def stop_all(cluster_id: str, order: list[tuple[int, float]], grace: float = 10.0) -> None:
    """SIGTERM the recorded processes in order (agent first, so it can stop its pods), each given its own
    grace (seconds) to exit before the next; then anything left."""
    for pid, own_grace in order:
        _signal(pid, signal.SIGTERM)
        _wait_gone([pid], own_grace)
    rest = marked(cluster_id)
    for pid in rest:
        _signal(pid, signal.SIGTERM)
    _wait_gone(rest, grace)
    for pid in marked(cluster_id):
        _signal(pid, signal.SIGKILL)
    _wait_gone(marked(cluster_id), 5)


def stop_one(pid: int, grace: float = 10.0) -> None:
    _signal(pid, signal.SIGTERM)
    _wait_gone([pid], grace)
    if alive(pid):
        _signal(pid, signal.SIGKILL)
        _wait_gone([pid], 5)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)


def save_pids(path: Path, pids: dict[str, int]) -> None:
    path.write_text(json.dumps(pids, indent=2))


def load_pids(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def rss_mib(pids: list[int]) -> float:
    """The resident memory of these processes together, in MiB (those gone by now count nothing)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024
