"""Shared pieces of the benchmarks: server processes and their CPU and memory (the Go load generator is
devcluster.gotools.loadgen, built as the tests' Go tools are)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(argv: list[str], health: str, verify: Any, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, verify=verify, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{argv} did not become healthy:\n{log.read_text()[-2000:]}")


def run_load(
    binary: Path, url: str, body: Path, ca: Path, concurrency: int, seconds: float, pid: int
) -> dict[str, Any]:
    before = cpu_seconds(pid)
    out = subprocess.run(
        [str(binary), f"-url={url}", f"-body={body}", f"-ca={ca}", f"-c={concurrency}", f"-d={seconds}s", "-warmup=1s"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    spent = cpu_seconds(pid) - before
    result["cpu_ms_per_request"] = 1000 * spent / max(1, result["requests"]) if result["requests"] else 0.0
    return result


def python() -> str:
    return sys.executable


def wait(what: str, probe: Callable[[], Any], timeout: float = 300) -> Any:
    """`probe()`'s first truthy value, asked every 0.2 s; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)
    return value
