"""The gateway's settings: one model per server, from which `hearth gateway front-door|sidecar` generate
their flags (common/flags.py). Every default lives here, once."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.flags import BaseURL, Duration, ServiceAccountRef
from policies import ScaleSpec

_SCALE = ScaleSpec()  # the annotations' defaults, for --upstream models


class FrontDoorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = Field("0.0.0.0", description="address to listen on")  # noqa: S104 - clients on other hosts
    port: int = Field(8080, ge=1, le=65535, description="port to listen on")
    metrics_port: int = Field(
        9090,
        ge=0,
        le=65535,
        description="port of /metrics (and /healthz) for Prometheus, apart from the API port so that callers "
        "of the API never see model or key names (it must differ from --port); 0 serves /metrics on --port",
    )
    upstreams: dict[str, list[str]] = Field(
        default_factory=dict,
        description="a fixed backend outside a cluster, NAME=URL, held until its /health answers 200 "
        "(repeat; a NAME may repeat)",
        json_schema_extra={"name": "upstream", "repeat": True, "metavar": "NAME=URL"},
    )
    kubeconfig: Path | None = Field(None, description="watch opted-in Deployments and pods with this kubeconfig")
    in_cluster: bool = Field(False, description="watch with the pod's service account")
    namespaces: tuple[str, ...] = Field(
        (), description="only these namespaces (repeat; default: all)", json_schema_extra={"name": "namespace"}
    )
    names_namespace: str | None = Field(
        None,
        description="where the scaler records who holds a contested model name (default: this pod's namespace)",
    )
    cold_start: Literal["keepalive", "reject"] = Field(
        _SCALE.cold_start, description="for --upstream models (Deployments use hearth.dev/cold-start)"
    )
    heartbeat_interval: Duration = Field(_SCALE.heartbeat_interval, gt=0, description="SSE comment heartbeat")
    json_keepalive: bool = Field(
        _SCALE.json_keepalive,
        description="for --upstream models: a held non-streaming request gets a 200 and spaces while held "
        "(Deployments use hearth.dev/json-keepalive)",
    )
    cold_start_progress: bool = Field(
        _SCALE.cold_start_progress,
        description="for --upstream models: held streaming chat requests see the start's progress as reasoning "
        "deltas (Deployments use hearth.dev/cold-start-progress)",
    )
    activation_timeout: Duration = Field(_SCALE.activation_timeout, gt=0, description="longest hold")
    queue_size: int = Field(_SCALE.queue_size, ge=0, description="held requests per model")
    max_held: int = Field(10_000, ge=0, description="held requests in total, all models")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    body_timeout: Duration = Field(30.0, gt=0, description="longest body upload; then 408")
    header_timeout: Duration = Field(10.0, gt=0, description="longest request-head read")
    shutdown_timeout: Duration = Field(
        580.0,
        gt=0,
        description="after SIGTERM, how long open streams and held requests may still finish (keep it under the "
        "pod's terminationGracePeriodSeconds, 600 as shipped, minus its 5 s preStop pause)",
    )
    connect_timeout: Duration = Field(5.0, gt=0, description="connecting to a pod")
    idle_stream_timeout: Duration = Field(600.0, gt=0, description="longest silence from a pod mid-answer")
    health_interval: Duration = Field(0.5, gt=0, description="how often --upstream backends' /health is read")
    held_health_interval: Duration = Field(
        0.05, gt=0, description="how often while requests are held for an --upstream model (a start is noticed sooner)"
    )
    retries: int = Field(3, ge=0, description="other pods tried when one fails before any byte")
    scaler_url: BaseURL | None = Field(
        None, description="where to push activations at once, e.g. http://hearth-scaler:8081"
    )
    scaler_selector: str | None = Field(
        None,
        description="push activations to every scaler pod with these labels (the leader takes it), "
        "e.g. app.kubernetes.io/name=hearth-scaler",
    )
    scaler_namespace: str | None = Field(None, description="where the scaler pods run (default: this pod's namespace)")
    scaler_port: int = Field(8081, ge=1, le=65535, description="the scaler pods' port")
    activation_retry_for: Duration = Field(30.0, gt=0, description="keep pushing an activation this long")
    trusted_network: bool = Field(
        False,
        description="serve every model to every caller without an API key (by default a call needs a key: "
        "a Secret labelled hearth.dev/api-key in the namespace of the models it calls)",
    )
    api_keys: Path | None = Field(
        None,
        description="API keys from this file of key Secrets (YAML, as kubectl applies them), read at start: for "
        "--upstream models outside a cluster, where there are no Secrets to watch",
    )
    internal_callers: tuple[ServiceAccountRef, ...] = Field(
        (),
        description="a ServiceAccount, NAMESPACE/NAME, whose token (audience hearth) may read /demand (repeat; "
        "none: /demand answers anyone)",
        json_schema_extra={"name": "internal-caller", "metavar": "NAMESPACE/NAME"},
    )
    token_file: Path | None = Field(
        None, description="this pod's ServiceAccount token for the audience hearth, sent with activation pushes"
    )
    no_access_log: bool = Field(False, description="no JSON access log line per call on stdout")
    log_level: str = Field("info", json_schema_extra={"flag": False})

    @field_validator("upstreams", mode="before")
    @classmethod
    def _name_equals_url(cls, value: object) -> object:
        """`NAME=URL` strings (from the command line) into {NAME: [URL, ...]}."""
        if not isinstance(value, list | tuple):
            return value
        upstreams: dict[str, list[str]] = {}
        for item in value:
            name, sep, url = str(item).partition("=")
            if not sep or not name or not url.startswith(("http://", "https://")):
                raise ValueError(f"takes NAME=URL (e.g. qwen3-8b=http://127.0.0.1:8000), not {item!r}")
            upstreams.setdefault(name, []).append(url.rstrip("/"))
        return upstreams

    @model_validator(mode="after")
    def _two_ports(self) -> FrontDoorSettings:
        """One port for both would send every API call to the metrics app (its 404s), with /healthz still 200."""
        if self.metrics_port == self.port:
            raise ValueError(f"--metrics-port must differ from --port ({self.port}); 0 serves /metrics on --port")
        return self

    @property
    def finds_models(self) -> bool:
        return bool(self.upstreams) or self.kubeconfig is not None or self.in_cluster

    @property
    def defaults(self) -> ScaleSpec:
        """The scale spec of --upstream models."""
        return ScaleSpec(
            cold_start=self.cold_start,
            heartbeat_interval=self.heartbeat_interval,
            json_keepalive=self.json_keepalive,
            cold_start_progress=self.cold_start_progress,
            activation_timeout=self.activation_timeout,
            queue_size=self.queue_size,
        )


class SidecarSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    upstream: BaseURL = Field(description="the runtime, e.g. http://127.0.0.1:8000")
    host: str = Field("0.0.0.0", description="address to listen on")  # noqa: S104 - reached by the front door
    port: int = Field(8090, ge=1, le=65535, description="port to listen on")
    drain_timeout: Duration = Field(300.0, gt=0, description="longest wait for open streams on termination")
    health_path: str = Field(
        "/health",
        pattern=r"^/",
        description="the runtime's health check, which /ready follows (keep mode: the model container's "
        "readiness probe path)",
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    body_timeout: Duration = Field(30.0, gt=0, description="longest body upload; then 408")
    connect_timeout: Duration = Field(5.0, gt=0, description="connecting to the runtime")
    idle_stream_timeout: Duration = Field(600.0, gt=0, description="longest silence from the runtime mid-answer")
