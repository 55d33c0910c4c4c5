"""How the node agent runs a pod's containers without a container runtime, as local processes.

Pure: a container spec and the pod's address in, a command line out. Every pod gets its own loopback
address (127.X.0.N), so the pod's own `127.0.0.1` is rewritten to that address, and servers are told to
listen there. The gateway sidecar (`command: [hearth]`) runs as the real Hearth process; any other image
(vLLM, vllm-ascend, the simulator runtimes) runs the model simulator with the served model name and port
taken from the container's rendered arguments.
"""

from __future__ import annotations

import sys
from typing import Any

SIM_FLAGS = ("--startup-duration", "--ttft", "--itl", "--max-num-seqs", "--fail-start")
DEFAULT_STARTUP = "2s"


def _flag(args: list[str], name: str) -> str | None:
    """The value of a flag; the last one wins, as with vLLM's own parser (so hearth.dev/extra-args can
    override a runtime's default)."""
    found = None
    for index, arg in enumerate(args):
        if arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
        elif arg == name and index + 1 < len(args):
            found = args[index + 1]
    return found


def command_for(container: dict[str, Any], pod_ip: str) -> list[str]:
    command = list(container.get("command") or [])
    args = [str(a).replace("127.0.0.1", pod_ip) for a in container.get("args") or []]
    if command[:1] == ["hearth"]:
        extra = [f"--host={pod_ip}"] if args[:2] == ["gateway", "sidecar"] else []
        return [sys.executable, "-m", "hearth", *args, *extra]
    served = _flag(args, "--served-model-name") or "model"
    port = _flag(args, "--port") or "8000"
    sim = [
        sys.executable,
        "-m",
        "hearth",
        "dev",
        "simulator",
        f"--host={pod_ip}",
        f"--port={port}",
        f"--served-model-name={served}",
    ]
    for flag in SIM_FLAGS:
        value = _flag(args, flag)
        if value is not None:
            sim.append(f"{flag}={value}")
    if _flag(args, "--startup-duration") is None:
        sim.append(f"--startup-duration={DEFAULT_STARTUP}")
    return sim


def probe_url(probe: dict[str, Any] | None, pod_ip: str) -> str | None:
    http = (probe or {}).get("httpGet")
    if not isinstance(http, dict):
        return None
    scheme = str(http.get("scheme", "HTTP")).lower()
    return f"{scheme}://{pod_ip}:{http.get('port')}{http.get('path', '/')}"
