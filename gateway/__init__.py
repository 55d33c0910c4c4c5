"""The gateway: the front door and the sidecar in every model pod. Its public names; the rest is its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import exports

if TYPE_CHECKING:
    from gateway.keys import KeyRing
    from gateway.server import serve as serve_front_door
    from gateway.settings import FrontDoorSettings, SidecarSettings
    from gateway.sidecar import serve as serve_sidecar

# Imported on first use (common/lazy.py): reading a settings model does not load every server.
_EXPORTS = {
    "KeyRing": ("gateway.keys", "KeyRing"),
    "FrontDoorSettings": ("gateway.settings", "FrontDoorSettings"),
    "SidecarSettings": ("gateway.settings", "SidecarSettings"),
    "serve_front_door": ("gateway.server", "serve"),
    "serve_sidecar": ("gateway.sidecar", "serve"),
}
__all__ = [
    "FrontDoorSettings",
    "KeyRing",
    "SidecarSettings",
    "serve_front_door",
    "serve_sidecar",
]

__getattr__ = exports(__name__, _EXPORTS)
