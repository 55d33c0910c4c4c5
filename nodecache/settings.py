"""The node agent's settings: one model, from which `hearth cache agent` generates its flags."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from common.flags import Duration


class AgentSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = Field("0.0.0.0", description="address of /metrics and /healthz")  # noqa: S104 - scraped by Prometheus
    port: int = Field(9410, ge=1, le=65535, description="port of /metrics and /healthz")
    kubeconfig: Path | None = Field(None, description="kubeconfig (or --in-cluster)")
    in_cluster: bool = Field(False, description="use the pod's service account")
    node: str = Field(
        default_factory=lambda: os.environ.get("NODE_NAME", ""),
        description="this node's name (default: $NODE_NAME, from the downward API)",
    )
    root: Path = Field(Path("/var/lib/hearth/models"), description="where the node's cache folder is mounted here")
    host_path: str = Field(
        "/var/lib/hearth/models",
        description="that folder's path on the node: the runtimes whose cache.hostPath it is give its size",
    )
    interval: Duration = Field(10.0, gt=0, description="time between passes")
    log_level: str = Field("info", json_schema_extra={"flag": False})
