"""The gateway: the front door and the sidecar in every model pod. Its public names; the rest is its own."""

from gateway.server import serve as serve_front_door
from gateway.settings import FrontDoorSettings, SidecarSettings
from gateway.sidecar import serve as serve_sidecar

__all__ = ["FrontDoorSettings", "SidecarSettings", "serve_front_door", "serve_sidecar"]
