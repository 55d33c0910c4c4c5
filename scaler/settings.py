"""The scaler's settings: one model, from which `hearth scaler` generates its flags (common/flags.py)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.flags import BaseURL, Duration, ServiceAccountRef
from scaler.packing import Rules


@dataclass(frozen=True)
class LeaseSettings:
    name: str = "hearth-scaler"
    namespace: str = "hearth-system"
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("lease timings need 0 < retry-period < renew-deadline < lease-duration")


_LEASE = LeaseSettings()


def _identity() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


class ScalerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = Field("0.0.0.0", description="address to listen on")  # noqa: S104 - front doors push from pods
    port: int = Field(8081, ge=1, le=65535, description="port to listen on")
    kubeconfig: Path | None = Field(None, description="kubeconfig (or --in-cluster)")
    in_cluster: bool = Field(False, description="use the pod's service account")
    gateway_urls: tuple[BaseURL, ...] = Field(
        (), description="a front door whose /demand to read (repeat)", json_schema_extra={"name": "gateway-url"}
    )
    gateway_selector: str | None = Field(
        None,
        description="read /demand from every front-door pod with these labels, "
        "e.g. app.kubernetes.io/name=hearth-gateway",
    )
    gateway_namespace: str | None = Field(
        None, description="where the front-door pods run (default: this pod's namespace)"
    )
    gateway_port: int = Field(8080, ge=1, le=65535, description="the front-door pods' port")
    tick: Duration = Field(1.0, gt=0, description="time between passes")
    identity: str = Field(
        default_factory=_identity, description="this replica's name in the Lease (default: $POD_NAME, else host name)"
    )
    lease_name: str = Field(_LEASE.name, description="the Lease the replicas elect a leader on")
    names_namespace: str | None = Field(
        None, description="where to record who holds a contested model name (default: this pod's namespace)"
    )
    lease_namespace: str = Field(_LEASE.namespace, description="the Lease's namespace")
    lease_duration: Duration = Field(_LEASE.duration, gt=0, description="how long a Lease holds without renewal")
    renew_deadline: Duration = Field(_LEASE.renew_deadline, gt=0, description="a leader stops acting after")
    retry_period: Duration = Field(_LEASE.retry_period, gt=0, description="standby retry interval")
    internal_callers: tuple[ServiceAccountRef, ...] = Field(
        (),
        description="a ServiceAccount, NAMESPACE/NAME, whose token (audience hearth) may push to /activate "
        "(repeat; none: /activate answers anyone)",
        json_schema_extra={"name": "internal-caller", "metavar": "NAMESPACE/NAME"},
    )
    token_file: Path | None = Field(
        None, description="this pod's ServiceAccount token for the audience hearth, sent to read /demand"
    )
    prewarm_image: str = Field(
        "ghcr.io/hearth-project/hearth:0.1.0",
        description="Hearth's image, run by the prewarm Jobs (the sidecar's: HEARTH_SIDECAR_IMAGE)",
        json_schema_extra={"env": "HEARTH_SIDECAR_IMAGE"},
    )
    prewarm_interval: Duration = Field(5.0, gt=0, description="time between prewarm passes (hearth.dev/prewarm)")
    anticipations_per_day: int = Field(
        2,
        ge=0,
        le=24,
        description="most wakes before an expected use per model and UTC day (hearth.dev/anticipate); 0: none",
    )
    llmservice_interval: Duration = Field(
        2.0, gt=0, description="time between passes over LLMServices (compile each into its Deployment, mirror status)"
    )
    swaps_per_minute: int = Field(
        6,
        ge=0,
        le=1000,
        description="most idle replicas retired per accelerator resource per minute to make room for a waking "
        "model (0: never make room; pods wait for an idle model's scale-down-delay)",
    )
    retire_grace: Duration = Field(
        30.0, ge=0, description="a replica is retired only after its model is idle this long"
    )
    min_residency: Duration = Field(
        120.0, ge=0, description="a replica is retired only after it has been up this long (no thrashing)"
    )
    default_max_priority: int = Field(
        1000,
        ge=0,
        le=1000,
        description="the highest hearth.dev/priority a model acts with in a namespace without the label "
        "hearth.dev/max-priority (which a cluster admin sets per namespace); 1000: a tenant's own value. A "
        "cluster shared by tenants sets 0 and labels the namespaces that may outrank others",
    )
    vendor_fallback_after: Duration = Field(
        30.0,
        ge=1,
        description="a model pod that waits this long for its vendor's accelerators, while another vendor its "
        "Deployment lists has room, is replaced (the replacement is rendered for that vendor)",
    )
    log_level: str = Field("info", json_schema_extra={"flag": False})

    @model_validator(mode="after")
    def _lease_timings(self) -> ScalerSettings:
        self.lease  # noqa: B018 - LeaseSettings checks retry-period < renew-deadline < lease-duration
        return self

    @property
    def rules(self) -> Rules:
        return Rules(grace=self.retire_grace, residency=self.min_residency, swaps_per_minute=self.swaps_per_minute)

    @property
    def lease(self) -> LeaseSettings:
        return LeaseSettings(
            name=self.lease_name,
            namespace=self.lease_namespace,
            duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )
