"""The front door's settings: one object, built by the CLI and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from policies import ScaleSpec


@dataclass(frozen=True)
class FrontDoorSettings:
    host: str = "0.0.0.0"  # noqa: S104 - the front door serves clients from other hosts
    port: int = 8080
    upstreams: dict[str, list[str]] = field(default_factory=dict)  # NAME -> URLs, outside a cluster
    kubeconfig: Path | None = None
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    in_cluster: bool = False
    defaults: ScaleSpec = field(default_factory=ScaleSpec)  # for --upstream models
    max_held_total: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    body_timeout: float = 30.0
    header_timeout: float = 10.0
    connect_timeout: float = 5.0
    idle_stream_timeout: float = 600.0
    health_interval: float = 0.5
    retries: int = 3
    scaler_url: str | None = None
    scaler_selector: str | None = None  # push to every scaler pod with these labels; the leader accepts
    scaler_namespace: str | None = None
    scaler_port: int = 8081
    activation_retry_for: float = 30.0  # keep pushing an activation this long until a scaler accepts it
    log_level: str = "info"
