"""The webhook's settings: one object, built by the CLI and passed down (nothing reads the environment)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from policies import SHIPPED_IMAGE, RenderSettings


class WebhookSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "0.0.0.0"  # noqa: S104 - a webhook serves the apiserver from another host
    port: int = Field(default=8443, ge=1, le=65535)
    cert_dir: Path = Path("/etc/hearth/tls")
    runtimes_file: Path | None = None
    kubeconfig: Path | None = None
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    cert_reload_seconds: float = Field(default=10.0, gt=0)
    sidecar_image: str = SHIPPED_IMAGE
    sidecar_port: int = Field(default=8090, ge=1, le=65535)
    log_level: str = "info"

    @property
    def render(self) -> RenderSettings:
        return RenderSettings(sidecar_image=self.sidecar_image, sidecar_port=self.sidecar_port)
