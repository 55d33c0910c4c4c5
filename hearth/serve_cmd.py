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


def add_services(sub: Any) -> None:
    import gateway
    import scaler
    import webhook
    from gateway import FrontDoorSettings, SidecarSettings
    from scaler import ScalerSettings
    from webhook import WebhookSettings

    # The servers are looked up when a command runs, not when the parser is built: `hearth webhook` never
    # loads the gateway's or the scaler's libraries.
    def serve_webhook(settings: Any) -> Any:
        return webhook.serve(settings)

    def serve_front_door(settings: Any) -> Any:
        return gateway.serve_front_door(settings)

    def serve_sidecar(settings: Any) -> Any:
        return gateway.serve_sidecar(settings)

    def serve_scaler(settings: Any) -> Any:
        return scaler.serve(settings)

    add_service(sub, "webhook", "serve the admission webhook over TLS", WebhookSettings, serve_webhook)
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
    add_service(
        sub,
        "scaler",
        "the leader-elected loop that scales Hearth Deployments 0 -> 1 -> N -> 0",
        ScalerSettings,
        serve_scaler,
        check=lambda s: None if s.kubeconfig or s.in_cluster else "give --kubeconfig PATH or --in-cluster",
    )
