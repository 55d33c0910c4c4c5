"""`hearth webhook`, `hearth gateway front-door|sidecar` and `hearth scaler`: each service's flags are
generated from its settings model (common/flags.py); this module only wires a parsed model to its server."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from common.flags import add_flags, settings_from
from common.loop import run as run_loop


def _command(model: type[Any], serve: Callable[[Any], Any], check: Callable[[Any], str | None] | None = None) -> Any:
    def command(args: argparse.Namespace) -> int:
        settings = settings_from(args.parser, args, model, log_level=args.log_level)
        problem = check(settings) if check is not None else None
        if problem:
            args.parser.error(problem)
        run_loop(serve(settings))
        return 0

    return command


def add_service(sub: Any, name: str, help_text: str, model: type[Any], serve: Callable[[Any], Any], **kw: Any) -> None:
    """A subcommand whose flags come from `model` and which runs `serve(settings)` on the event loop."""
    parser = sub.add_parser(name, help=help_text)
    add_flags(parser, model)
    parser.set_defaults(func=_command(model, serve, **kw), parser=parser)


# The servers are looked up when a command runs, not when its parser is built: `hearth webhook` never loads
# the gateway's or the scaler's libraries, and each settings model is imported only for its own command.
def add_webhook(sub: Any) -> None:
    import webhook
    from webhook import WebhookSettings

    def serve_webhook(settings: Any) -> Any:
        return webhook.serve(settings)

    add_service(sub, "webhook", "serve the admission webhook over TLS", WebhookSettings, serve_webhook)


def add_gateway(sub: Any) -> None:
    import gateway
    from gateway import FrontDoorSettings, SidecarSettings

    def serve_front_door(settings: Any) -> Any:
        return gateway.serve_front_door(settings)

    def serve_sidecar(settings: Any) -> Any:
        return gateway.serve_sidecar(settings)

    gateway_parser = sub.add_parser("gateway", help="the gateway: front door, and sidecar in model pods")
    gateway_sub = gateway_parser.add_subparsers(dest="gateway_command", required=True)
    add_service(
        gateway_sub,
        "front-door",
        "the OpenAI-compatible front door: route, hold, heartbeat",
        FrontDoorSettings,
        serve_front_door,
        check=lambda s: None if s.finds_models else "give --upstream NAME=URL, --kubeconfig PATH or --in-cluster",
    )
    add_service(
        gateway_sub, "sidecar", "front the runtime in a model pod; count and drain", SidecarSettings, serve_sidecar
    )


def add_scaler(sub: Any) -> None:
    import scaler
    from scaler import ScalerSettings

    def serve_scaler(settings: Any) -> Any:
        return scaler.serve(settings)

    add_service(
        sub,
        "scaler",
        "the leader-elected loop that scales Hearth Deployments 0 -> 1 -> N -> 0",
        ScalerSettings,
        serve_scaler,
        check=lambda s: None if s.kubeconfig or s.in_cluster else "give --kubeconfig PATH or --in-cluster",
    )
