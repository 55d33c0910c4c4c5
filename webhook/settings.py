"""The webhook's settings: one model, from which `hearth webhook` generates its flags (common/flags.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from common.flags import Duration
from policies import SHIPPED_IMAGE, RenderSettings


class SidecarInjection(BaseModel):
    """The sidecar the webhook adds to every model pod (also `hearth render`'s flags)."""

    model_config = ConfigDict(frozen=True)

    # The environment variable lets a kustomize overlay or Helm set the image with a plain env entry, next
    # to the `image:` it retags (an argument list cannot be patched by name).
    sidecar_image: str = Field(
        SHIPPED_IMAGE,
        description="image of the sidecar added to every model pod",
        json_schema_extra={"env": "HEARTH_SIDECAR_IMAGE"},
    )
    sidecar_port: int = Field(8090, ge=1, le=65535, description="port of the gateway sidecar")

    @property
    def render(self) -> RenderSettings:
        return RenderSettings(sidecar_image=self.sidecar_image, sidecar_port=self.sidecar_port)


class WebhookSettings(SidecarInjection):
    cert_dir: Path = Field(description="folder with tls.crt and tls.key")
    host: str = Field("0.0.0.0", description="address to listen on")  # noqa: S104 - the apiserver calls in
    port: int = Field(8443, ge=1, le=65535, description="port to listen on")
    runtimes_file: Path | None = Field(
        None, description="InferenceRuntimes from a file instead of the cluster", json_schema_extra={"name": "runtimes"}
    )
    kubeconfig: Path | None = Field(None, description="kubeconfig (default: in-cluster or ~/.kube/config)")
    names_namespace: str | None = Field(
        None, description="where the scaler records who holds a contested model name (default: this pod's namespace)"
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    body_timeout: Duration = Field(10.0, gt=0, description="longest AdmissionReview upload; then 408")
    cert_reload_seconds: Duration = Field(10.0, gt=0, description="how often to look for a rotated certificate")
    log_level: str = Field("info", json_schema_extra={"flag": False})
