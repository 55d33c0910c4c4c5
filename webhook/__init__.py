"""The admission webhook: renders and validates, over TLS. Its public names; the rest is its own."""

from webhook.runtimes import load_runtimes
from webhook.server import serve
from webhook.settings import SidecarInjection, WebhookSettings

__all__ = ["SidecarInjection", "WebhookSettings", "load_runtimes", "serve"]
