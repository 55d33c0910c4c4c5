"""The `hearth` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearth import __version__
from hearth.cache_cmd import add_cache, fetch_flags

Subcommands = Any  # argparse's _SubParsersAction, private to argparse


def _cmd_render(args: argparse.Namespace) -> int:
    from common.flags import settings_from
    from hearth.render_cmd import run
    from webhook import SidecarInjection

    return run(args.file, args.runtimes, settings_from(args.parser, args, SidecarInjection).render)


def _cmd_adopt(args: argparse.Namespace) -> int:
    from hearth.adopt_cmd import run
    from webhook import load_runtimes

    keys = {
        f"hearth.dev/{name}": value
        for name, value in (
            ("model", args.model),
            ("vendors", args.vendors),
            ("runtime", args.runtime),
            ("container", args.container),
            ("served-name", args.served_name),
        )
        if value
    }
    runtimes = load_runtimes(args.runtimes) if args.runtimes else []
    return run(args.file, keys, runtimes, args.in_place)


def _cmd_certs(args: argparse.Namespace) -> int:
    from ruamel.yaml.error import YAMLError

    from certs import expires_within, issue, patch_file, patch_live

    if args.if_expiring_within is not None and not expires_within(args.out / "tls.crt", args.if_expiring_within):
        print(f"{args.out / 'tls.crt'} is valid for more than {args.if_expiring_within} days; nothing to do")
        return 0
    ca = issue(args.out, args.host, args.key_type, args.days)
    print(f"wrote {args.out}/ca.crt, tls.crt, tls.key for {', '.join(args.host)}")
    for manifest in args.patch or []:
        try:
            count = patch_file(manifest, ca.cert_pem())
        except (OSError, ValueError, YAMLError) as refused:
            print(f"error: {manifest}: {refused}", file=sys.stderr)
            return 1
        print(f"caBundle written into {count} webhook configuration(s) in {manifest}")
    if args.kubeconfig is not None:
        for name in patch_live(str(args.kubeconfig), ca.cert_pem()):
            print(f"caBundle patched into {name}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from hearth.status_cmd import capacity_table, fetch, fetch_capacity, fetch_services, table

    if args.capacity:
        view, models = fetch_capacity(str(args.kubeconfig) if args.kubeconfig else None)
        print(capacity_table(view, models) if view.nodes else "No node offers an accelerator (extended resource).")
        return 0
    namespace = None if args.all_namespaces else args.namespace
    kubeconfig = str(args.kubeconfig) if args.kubeconfig else None
    deployments, services = fetch(kubeconfig, namespace), fetch_services(kubeconfig, namespace)
    if not deployments and not services:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No Hearth Deployments (label hearth.dev/enabled=true) or LLMServices in {where}.")
        return 0
    print(table(deployments, with_namespace=namespace is None, services=services))
    return 0


def _add_render(sub: Subcommands) -> None:
    from common.flags import add_flags
    from webhook import SidecarInjection

    render = sub.add_parser("render", help="print the Pod the webhook would create for a Deployment")
    render.add_argument("-f", "--file", type=Path, required=True, help="YAML file with the annotated Deployment")
    render.add_argument("--runtimes", type=Path, required=True, help="YAML file or folder of InferenceRuntimes")
    add_flags(render, SidecarInjection)
    render.set_defaults(func=_cmd_render, parser=render)


def _add_adopt(sub: Subcommands) -> None:
    adopt = sub.add_parser(
        "adopt",
        help="add Hearth's label and annotations to a Deployment manifest, keeping its comments and order",
    )
    adopt.add_argument("-f", "--file", type=Path, required=True, help="YAML file with the Deployment(s)")
    adopt.add_argument("-i", "--in-place", action="store_true", help="rewrite the file instead of printing")
    adopt.add_argument("--model", help="model URI (render mode); without it the server runs as written")
    adopt.add_argument("--vendors", help="render mode: accelerator vendors in order of preference")
    adopt.add_argument("--runtime", help="render mode: pin one InferenceRuntime")
    adopt.add_argument("--container", help="the model container, when Hearth cannot tell")
    adopt.add_argument("--served-name", help="names clients use, comma-separated (the first is the server's)")
    adopt.add_argument("--runtimes", type=Path, help="InferenceRuntimes (file or folder) for the webhook's checks")
    adopt.set_defaults(func=_cmd_adopt)


def _add_certs(sub: Subcommands) -> None:
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


def _add_status(sub: Subcommands) -> None:
    status = sub.add_parser("status", help="NAME PHASE RUNTIME REPLICAS DEMAND PREWARMED AGE of Hearth Deployments")
    status.add_argument("-n", "--namespace", default="default")
    status.add_argument("-A", "--all-namespaces", action="store_true")
    status.add_argument("--kubeconfig", type=Path, help="default: $KUBECONFIG or ~/.kube/config")
    status.add_argument(
        "--capacity", action="store_true", help="per node and accelerator: free, busy, idle, other, and who holds it"
    )
    status.set_defaults(func=_cmd_status)


def _add_dev(sub: Subcommands) -> None:
    from hearth.dev_cmd import add_dev

    add_dev(sub)


def _add_service(name: str) -> Callable[[Subcommands], None]:
    def add(sub: Subcommands) -> None:
        from hearth import serve_cmd

        getattr(serve_cmd, f"add_{name}")(sub)

    return add


# Each command and what adds it to the parser, in `hearth --help`'s order. A command's modules are imported
# only when it is added: a process in a pod (`hearth gateway sidecar`, `hearth dev simulator`) builds its own
# command alone and starts without importing every other command's settings and libraries.
COMMANDS: dict[str, Callable[[Subcommands], None]] = {
    "render": _add_render,
    "adopt": _add_adopt,
    "certs": _add_certs,
    "status": _add_status,
    "cache": add_cache,
    "dev": _add_dev,
    "webhook": _add_service("webhook"),
    "gateway": _add_service("gateway"),
    "scaler": _add_service("scaler"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """`hearth`'s parser: every command, or `command` alone when it is one of them (what `main` builds for
    a command line that names it; help and errors for other words need them all)."""
    parser = argparse.ArgumentParser(prog="hearth", description="Scale-to-zero LLM serving on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, add in COMMANDS.items():
        if command in (None, name) or command not in COMMANDS:
            add(sub)
    return parser


def _fetch_parser() -> argparse.ArgumentParser:
    """`hearth cache fetch` alone: every model pod's init container runs it, so it starts without importing
    the other commands (about 0.2 s of each cold start)."""
    parser = argparse.ArgumentParser(prog="hearth cache fetch")
    fetch_flags(parser)
    parser.set_defaults(log_level="info")
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    fetching = words[:2] == ["cache", "fetch"]
    # The first word that is not a flag names the command (or, after --log-level, a level: all are built).
    command = next((word for word in words if not word.startswith("-")), None)
    parser = _fetch_parser() if fetching else build_parser(command)
    args = parser.parse_args(words[2:] if fetching else words)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):  # one line per request is noise at INFO (httpx2: the hub client's)
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
