"""The gateway, side by side in one run on the same simulator, each hop as users run it: direct; the
front door bare (no keys, no access log); the front door as shipped (API keys and its JSON access log);
the sidecar alone; both hops as shipped; LiteLLM's proxy (the Python peer users would pick); with
--tree, the same three shipped paths of another checkout (before). With --rounds N the paths alternate
N times and each figure is the median of its rounds.

    .venv/bin/python bench/gateway.py [--seconds 5] [--rounds 3] [--held 10000] [--no-litellm] [--tree OLD]

Also the cost of authenticating one request in the front door (hash, lookup, compare, limits), in process.

Reports added time to first token (p50/p99, at concurrency 1), relayed tokens per second at 1, 64 and
256 concurrent streams with zero simulated latency (the relay ceiling), CPU-ms per 1,000 tokens relayed,
and memory per held streaming client with --held clients held at once. LiteLLM is installed on first use
into its own virtualenv in the user's cache (it pins many packages of its own).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import cpu_seconds
from devcluster.gotools import loadgen
from devcluster.processes import rss_mib

MASTER_KEY = "sk-hearth-bench-only"  # LiteLLM refuses to start without one; the others ignore it
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hearth" / "bench"
REQUEST = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 100}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        argv: list[str],
        base: str,
        health_path: str,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> tuple[subprocess.Popen[bytes], str]:
        health = base + health_path
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(health, timeout=1).status_code == 200:
                    return proc, base
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
            if proc.poll() is not None:
                break
        raise SystemExit(f"{name} did not start:\n{(self.tmp / f'{name}.log').read_text()[-2000:]}")

    def hearth(
        self, name: str, args: list[str], health_path: str, tree: Path | None = None
    ) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        argv = [sys.executable, "-m", "hearth", "--log-level=warning", *[a.replace("PORT", str(port)) for a in args]]
        # Another checkout's code: `python -m` puts the working directory first on the path, so the process
        # runs there (PYTHONPATH alone would still import this checkout's packages).
        env = {**os.environ, "PYTHONPATH": str(tree)} if tree is not None else None
        return self.start(name, argv, f"http://127.0.0.1:{port}", health_path, env=env, cwd=tree)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def litellm(stack: Stack, sim_url: str) -> tuple[subprocess.Popen[bytes], str] | None:
    venv = CACHE / "litellm-venv"
    if not (venv / "bin" / "litellm").exists():
        print("installing LiteLLM's proxy into", venv, "(first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    config = stack.tmp / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "qwen",
                        "litellm_params": {"model": "hosted_vllm/qwen", "api_base": f"{sim_url}/v1", "api_key": "none"},
                    }
                ],
                "litellm_settings": {"telemetry": False},
                "general_settings": {"master_key": MASTER_KEY},
            }
        )
    )
    port = free_port()
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    log = (stack.tmp / "litellm.log").open("wb")
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "litellm"),
            "--config",
            str(config),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--num_workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    stack.procs.append(proc)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    print("LiteLLM did not start; leaving it out:\n" + (stack.tmp / "litellm.log").read_text()[-1500:])
    return None


KEYS = f"""apiVersion: v1
kind: Secret
metadata: {{name: bench, namespace: local, labels: {{hearth.dev/api-key: "true"}}}}
stringData: {{key: {MASTER_KEY}}}
"""


def auth_cost(calls: int = 20_000, rounds: int = 7) -> dict[str, float]:
    """Microseconds per authenticated request in the front door's own code: the header read, SHA-256,
    the lookup, the constant-time compare and the limits (a rate and a concurrency cap), median of rounds."""
    from gateway import KeyRing
    from policies import api_key_of

    key = api_key_of(yaml.safe_load(KEYS))  # the key the keyed front door above reads from its file
    ring = KeyRing()
    ring.replace([dataclasses.replace(key, requests_per_minute=10**9, max_concurrent=10**6)])
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            ring.admit(ring.authenticate(headers))()
        times.append((time.perf_counter() - started) / calls * 1e6)
    times.sort()
    return {"p50_us": times[len(times) // 2], "best_us": times[0]}


def stream_load(
    binary: Path, url: str, body: Path, concurrency: int, seconds: float, pids: list[int]
) -> dict[str, Any]:
    before = sum(cpu_seconds(p) for p in pids)
    out = subprocess.run(
        [
            str(binary),
            "-stream",
            f"-url={url}/v1/chat/completions",
            f"-auth=Bearer {MASTER_KEY}",
            f"-body={body}",
            f"-c={concurrency}",
            f"-d={seconds}s",
            "-warmup=1s",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    spent = sum(cpu_seconds(p) for p in pids) - before
    result["cpu_ms_per_1k_tokens"] = 1e6 * spent / result["tokens"] if result["tokens"] else 0.0
    return result


def door_args(upstream: str) -> list[str]:
    # /metrics on the API port: several front doors run side by side (the default metrics port is one port)
    return [
        "gateway",
        "front-door",
        "--host=127.0.0.1",
        "--port=PORT",
        "--metrics-port=0",
        f"--upstream=qwen={upstream}",
    ]


def shipped_paths(
    stack: Stack, sim_url: str, keys: Path, tree: Path | None, label: str
) -> dict[str, tuple[str, list[int]]]:
    """The front door as shipped (keys, access log), the sidecar, and both hops, of this checkout or `tree`."""
    side_args = ["gateway", "sidecar", "--host=127.0.0.1", "--port=PORT", f"--upstream={sim_url}"]
    keyed, keyed_url = stack.hearth(f"door{label}", [*door_args(sim_url), f"--api-keys={keys}"], "/healthz", tree=tree)
    side, side_url = stack.hearth(f"sidecar{label}", side_args, "/ready", tree=tree)
    both, both_url = stack.hearth(f"both{label}", [*door_args(side_url), f"--api-keys={keys}"], "/healthz", tree=tree)
    return {
        f"front door, shipped{label}": (keyed_url, [keyed.pid]),
        f"sidecar{label}": (side_url, [side.pid]),
        f"front door + sidecar, shipped{label}": (both_url, [both.pid, side.pid]),
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median over the rounds."""
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], int | float)}


def held_memory(stack: Stack, binary: Path, body: Path, held: int) -> dict[str, float]:
    _, sim_url = stack.hearth(
        "sim-loading",
        ["dev", "simulator", "--port=PORT", "--served-model-name=qwen", "--startup-duration=3600s"],
        "/v1/models",
    )
    door, door_url = stack.hearth(
        "door-held",
        [
            "gateway",
            "front-door",
            "--host=127.0.0.1",
            "--port=PORT",
            "--metrics-port=0",
            f"--upstream=qwen={sim_url}",
            f"--queue-size={held}",
            f"--max-held={held}",
        ],
        "/healthz",
    )
    time.sleep(1)
    baseline = rss_mib([door.pid])
    proc = subprocess.Popen(
        [str(binary), f"-hold={held}", f"-url={door_url}/v1/chat/completions", f"-body={body}", "-d=60s"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    opened = json.loads(proc.stdout.readline())
    demand = httpx.get(f"{door_url}/demand").json()["models"]["local/qwen"]["held"]
    time.sleep(2)
    loaded = rss_mib([door.pid])
    proc.kill()
    proc.wait()
    return {
        "held": float(demand),
        "opened": float(opened["opened"]),
        "errors": float(opened["errors"]),
        "baseline_mib": baseline,
        "loaded_mib": loaded,
        "kib_per_client": 1024 * (loaded - baseline) / max(1, demand),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the paths this many times (medians)")
    parser.add_argument("--held", type=int, default=10_000)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--tree", type=Path, help="also through the front door of this checkout (before)")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers below
    binary = loadgen()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        body = tmp / "request.json"
        body.write_bytes(json.dumps(REQUEST).encode())
        keys = tmp / "keys.yaml"
        keys.write_text(KEYS)
        stack = Stack(tmp)
        try:
            _, sim_url = stack.hearth(
                "sim",
                ["dev", "simulator", "--port=PORT", "--served-model-name=qwen", "--max-num-seqs=4096"],
                "/v1/models",
            )
            paths: dict[str, tuple[str, list[int]]] = {"direct": (sim_url, [])}
            bare, bare_url = stack.hearth("door-bare", [*door_args(sim_url), "--no-access-log"], "/healthz")
            paths["front door, bare"] = (bare_url, [bare.pid])
            paths.update(shipped_paths(stack, sim_url, keys, None, ""))
            if args.tree is not None:
                paths.update(shipped_paths(stack, sim_url, keys, args.tree.resolve(), f" ({args.tree.name})"))
            if not args.no_litellm:
                found = litellm(stack, sim_url)
                if found is not None:
                    paths["LiteLLM proxy"] = (found[1], [found[0].pid])
            time.sleep(1.5)  # the front doors' health checks have seen their upstreams
            rounds: dict[str, dict[int, list[dict[str, Any]]]] = {name: {1: [], 64: [], 256: []} for name in paths}
            for round_ in range(args.rounds):
                for concurrency in (1, 64, 256):
                    for name, (url, pids) in paths.items():
                        result = stream_load(binary, url, body, concurrency, args.seconds, pids)
                        rounds[name][concurrency].append(result)
                        print(f"  round {round_ + 1} {name:<34} c={concurrency:<4} {result}", flush=True)
            results = {name: {c: medians(runs) for c, runs in by_c.items()} for name, by_c in rounds.items()}
            stack.stop()
            stack = Stack(tmp)
            held = held_memory(stack, binary, body, args.held)
        finally:
            stack.stop()
    direct = results["direct"][1]["ttft_p50_ms"]
    header = [
        "path",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "added p50 ms",
        "tok/s c=1",
        "tok/s c=64",
        "tok/s c=256",
        "CPU-ms/1k tok (c=64)",
        "of direct c=64",
        "of direct c=256",
    ]
    print("\n| " + " | ".join(header) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        one = rows[1]
        share = [rows[c]["tokens_per_s"] / results["direct"][c]["tokens_per_s"] for c in (64, 256)]
        print(
            f"| {name} | {one['ttft_p50_ms']:.2f} | {one['ttft_p99_ms']:.2f} | {one['ttft_p50_ms'] - direct:+.2f} | "
            f"{one['tokens_per_s']:.0f} | {rows[64]['tokens_per_s']:.0f} | {rows[256]['tokens_per_s']:.0f} | "
            f"{rows[64]['cpu_ms_per_1k_tokens']:.1f} | {share[0]:.0%} | {share[1]:.0%} |"
        )
    print(
        f"\nHeld streaming clients: {held['held']:.0f} held ({held['errors']:.0f} errors); front door RSS "
        f"{held['baseline_mib']:.0f} MiB idle -> {held['loaded_mib']:.0f} MiB held "
        f"({held['kib_per_client']:.1f} KiB per held client)"
    )
    cost = auth_cost()
    print(
        f"Authentication in the front door: {cost['p50_us']:.2f} us per request at the median "
        f"(best round {cost['best_us']:.2f} us; target < 100 us)"
    )
    print(json.dumps({"results": results, "held": held, "auth": cost}))


if __name__ == "__main__":
    main()
