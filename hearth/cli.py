"""The `hearth` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from common.loop import run as run_loop
from hearth import __version__
from hearth.dev_cmd import add_dev, add_gateway, add_scaler
from policies import SHIPPED_IMAGE


def _cmd_render(args: argparse.Namespace) -> int:
    from hearth.render_cmd import run
    from policies import RenderSettings

    return run(
        args.file, args.runtimes, RenderSettings(sidecar_image=args.sidecar_image, sidecar_port=args.sidecar_port)
    )


def _cmd_certs(args: argparse.Namespace) -> int:
    from certs import expires_within, issue, patch_file, patch_live

    if args.if_expiring_within is not None and not expires_within(args.out / "tls.crt", args.if_expiring_within):
        print(f"{args.out / 'tls.crt'} is valid for more than {args.if_expiring_within} days; nothing to do")
        return 0
    ca = issue(args.out, args.host, args.key_type, args.days)
    print(f"wrote {args.out}/ca.crt, tls.crt, tls.key for {', '.join(args.host)}")
    for manifest in args.patch or []:
        count = patch_file(manifest, ca.cert_pem())
        print(f"caBundle written into {count} webhook configuration(s) in {manifest}")
    if args.kubeconfig is not None:
        for name in patch_live(str(args.kubeconfig), ca.cert_pem()):
            print(f"caBundle patched into {name}")
    return 0


def _cmd_webhook(args: argparse.Namespace) -> int:
    from webhook.server import serve
    from webhook.settings import WebhookSettings

    settings = WebhookSettings(
        host=args.host,
        port=args.port,
        cert_dir=args.cert_dir,
        runtimes_file=args.runtimes,
        kubeconfig=args.kubeconfig,
        max_body_bytes=args.max_body_bytes,
        sidecar_image=args.sidecar_image,
        sidecar_port=args.sidecar_port,
        log_level=args.log_level,
        cert_reload_seconds=args.cert_reload_seconds,
    )
    run_loop(serve(settings))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from hearth.status_cmd import fetch, table

    namespace = None if args.all_namespaces else args.namespace
    deployments = fetch(str(args.kubeconfig) if args.kubeconfig else None, namespace)
    if not deployments:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No Hearth Deployments (label hearth.dev/enabled=true) in {where}.")
        return 0
    print(table(deployments, with_namespace=namespace is None))
    return 0


def _add_sidecar_flags(parser: argparse.ArgumentParser) -> None:
    # The environment variable lets a kustomize overlay or Helm set the image with a plain env entry,
    # next to the `image:` it retags (an argument list cannot be patched by name).
    parser.add_argument(
        "--sidecar-image",
        default=os.environ.get("HEARTH_SIDECAR_IMAGE") or SHIPPED_IMAGE,
        help=f"image of the sidecar added to every model pod (env HEARTH_SIDECAR_IMAGE; default {SHIPPED_IMAGE})",
    )
    parser.add_argument("--sidecar-port", type=int, default=8090, help="port of the gateway sidecar (default 8090)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description="Scale-to-zero LLM serving on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="print the Pod the webhook would create for a Deployment")
    render.add_argument("-f", "--file", type=Path, required=True, help="YAML file with the annotated Deployment")
    render.add_argument("--runtimes", type=Path, required=True, help="YAML file or folder of InferenceRuntimes")
    _add_sidecar_flags(render)
    render.set_defaults(func=_cmd_render)

    certs = sub.add_parser("certs", help="make a CA and a serving certificate for the webhook")
    certs.add_argument("--out", type=Path, required=True, help="folder for ca.crt, ca.key, tls.crt, tls.key")
    certs.add_argument("--host", action="append", required=True, help="DNS name or IP address (repeat)")
    certs.add_argument("--key-type", choices=["ecdsa", "rsa"], default="ecdsa", help="ECDSA P-256 or RSA-2048")
    certs.add_argument("--days", type=int, default=365, help="validity of the serving certificate")
    certs.add_argument(
        "--if-expiring-within",
        type=float,
        metavar="DAYS",
        help="only rotate when the current certificate expires within DAYS",
    )
    certs.add_argument("--patch", type=Path, action="append", help="write the caBundle into this manifest file")
    certs.add_argument("--kubeconfig", type=Path, help="also patch the live webhook configurations named hearth")
    certs.set_defaults(func=_cmd_certs)

    hook = sub.add_parser("webhook", help="serve the admission webhook over TLS")
    hook.add_argument("--cert-dir", type=Path, required=True, help="folder with tls.crt and tls.key")
    hook.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    hook.add_argument("--port", type=int, default=8443)
    hook.add_argument("--runtimes", type=Path, help="InferenceRuntimes from a file instead of the cluster")
    hook.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: in-cluster or ~/.kube/config)")
    hook.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="larger bodies get 413")
    hook.add_argument("--cert-reload-seconds", type=float, default=10.0, help="how often to look for a rotated cert")
    _add_sidecar_flags(hook)
    hook.set_defaults(func=_cmd_webhook)

    status = sub.add_parser("status", help="NAME PHASE RUNTIME REPLICAS DEMAND AGE of Hearth Deployments")
    status.add_argument("-n", "--namespace", default="default")
    status.add_argument("-A", "--all-namespaces", action="store_true")
    status.add_argument("--kubeconfig", type=Path, help="default: $KUBECONFIG or ~/.kube/config")
    status.set_defaults(func=_cmd_status)

    add_dev(sub)
    add_gateway(sub)
    add_scaler(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise at INFO
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
