"""Real processes for the gateway tests: simulators, sidecars and front doors on loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

from tests.servers import free_port, hearth_process


@dataclass
class Proc:
    url: str
    proc: Popen[bytes]
    log: Path
    metrics_url: str = ""  # a front door's /metrics port


class Processes:
    """Starts `hearth` processes and stops them all at the end of a test."""

    def __init__(self, tmp: Path, stack: ExitStack) -> None:
        self.tmp = tmp
        self.stack = stack
        self.count = 0

    def _start(self, name: str, args: list[str], health: str, port: int) -> Proc:
        self.count += 1
        log = self.tmp / f"{self.count:02d}-{name}.log"
        proc = self.stack.enter_context(hearth_process(args, f"http://127.0.0.1:{port}{health}", False, log))
        return Proc(f"http://127.0.0.1:{port}", proc, log)

    def simulator(
        self,
        name: str = "qwen",
        startup: str = "0s",
        itl: str = "0s",
        ttft: str = "0s",
        fail_start: bool = False,
        port: int | None = None,
    ) -> Proc:
        port = port or free_port()
        args = [
            "dev",
            "simulator",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--served-model-name={name}",
            f"--startup-duration={startup}",
            f"--itl={itl}",
            f"--ttft={ttft}",
            f"--fail-start={'true' if fail_start else 'false'}",
        ]
        # /v1/models answers at once, before the simulated start-up is over
        return self._start("simulator", args, "/v1/models", port)

    def sidecar(self, upstream: Proc, drain_timeout: str = "30s", *flags: str) -> Proc:
        port = free_port()
        args = [
            "gateway",
            "sidecar",
            f"--upstream={upstream.url}",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--drain-timeout={drain_timeout}",
            *flags,
        ]
        return self._start("sidecar", args, "/demand", port)

    def door_then_simulator(self, startup: str, *door_flags: str, **simulator: Any) -> Proc:
        """A front door, then the simulator it fronts, still loading for `startup` when this returns: a request
        sent at once is held. Started the other way round, a loaded machine once took longer to start the door
        than the simulator took to load, and the request was not held at all."""
        port = free_port()
        door = self.front_door([(simulator.get("name", "qwen"), f"http://127.0.0.1:{port}")], *door_flags)
        self.simulator(startup=startup, port=port, **simulator)
        return door

    def front_door(self, upstreams: list[tuple[str, Proc | str]], *flags: str) -> Proc:
        port, metrics = free_port(), free_port()
        args = [
            "gateway",
            "front-door",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--metrics-port={metrics}",
            "--heartbeat-interval=500ms",
            *[f"--upstream={name}={p if isinstance(p, str) else p.url}" for name, p in upstreams],
            *flags,
        ]
        door = self._start("front-door", args, "/healthz", port)
        door.metrics_url = f"http://127.0.0.1:{metrics}"
        return door


@contextmanager
def processes(tmp: Path) -> Iterator[Processes]:
    with ExitStack() as stack:
        yield Processes(tmp, stack)
