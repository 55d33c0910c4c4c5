"""The admission webhook: renders and validates, over TLS. Its public names; the rest is its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import exports

if TYPE_CHECKING:
    from webhook.runtimes import load_runtimes
    from webhook.server import serve
    from webhook.settings import SidecarInjection, WebhookSettings

# Imported on first use (common/lazy.py): reading a settings model does not load every server.
_EXPORTS = {
    "SidecarInjection": ("webhook.settings", "SidecarInjection"),
    "WebhookSettings": ("webhook.settings", "WebhookSettings"),
    "load_runtimes": ("webhook.runtimes", "load_runtimes"),
    "serve": ("webhook.server", "serve"),
}
__all__ = [
    "SidecarInjection",
    "WebhookSettings",
    "load_runtimes",
    "serve",
]

__getattr__ = exports(__name__, _EXPORTS)
