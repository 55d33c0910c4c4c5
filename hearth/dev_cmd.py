"""`hearth dev ...` and `hearth gateway sidecar`: the local cluster, its image and its model simulator."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from common.duration import duration
from common.loop import run as run_loop

if TYPE_CHECKING:
    from devcluster.layout import Layout


def _layout(args: argparse.Namespace) -> Layout:
    from devcluster.layout import Layout, default_state_dir

    return Layout(state=args.state_dir or default_state_dir(), port_base=args.port_base, pod_net=args.pod_net)


def cmd_build(args: argparse.Namespace) -> int:
    from devcluster.build import main as build_binaries
    from devcluster.image import main as build_image

    return build_binaries() or build_image()


def cmd_image(args: argparse.Namespace) -> int:
    from devcluster.image import main

    return main()


def cmd_up(args: argparse.Namespace) -> int:
    from devcluster.build import BuildError, ensure_binaries
    from devcluster.cluster import Cluster
    from devcluster.image import ImageError
    from devcluster.layout import default_cache_dir
    from devcluster.network import NetworkError
    from devcluster.node import NodeError
    from devcluster.processes import StartError

    layout = _layout(args)
    try:
        cluster = Cluster(layout, ensure_binaries(default_cache_dir()))
        cluster.up()
    except (BuildError, ImageError, NetworkError, NodeError, StartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(f"kubeconfig: {layout.kubeconfig}")
    print(f'  eval "$(hearth dev env{_state_flag(args)})"   # then: kubectl get nodes,inferenceruntimes')
    print(f"  hearth dev down{_state_flag(args)}             # stop everything")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if cmd_up(args) != 0:
        return 1
    from devcluster.cluster import Cluster
    from devcluster.demo import run

    layout = _layout(args)
    print()
    return run(Cluster(layout))


def _state_flag(args: argparse.Namespace) -> str:
    return f" --state-dir {args.state_dir}" if args.state_dir else ""


def cmd_down(args: argparse.Namespace) -> int:
    from devcluster.cluster import Cluster

    layout = _layout(args)
    Cluster(layout).down()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from devcluster.cluster import Cluster

    layout = _layout(args)
    return Cluster(layout).status()


def cmd_env(args: argparse.Namespace) -> int:
    from devcluster.cluster import Cluster
    from devcluster.processes import StartError

    layout = _layout(args)
    try:
        print(Cluster(layout).env(), end="")
    except StartError as exc:
        print(f"error: is the dev cluster running? (hearth dev up)\n{exc}", file=sys.stderr)
        return 1
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from devcluster.simulator import SimSettings, create_app

    settings = SimSettings(
        served_names=args.served_model_name,
        startup_seconds=args.startup_duration,
        ttft_seconds=args.ttft,
        itl_seconds=args.itl,
        max_num_seqs=args.max_num_seqs,
        fail_start=args.fail_start == "true",
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_sidecar(args: argparse.Namespace) -> int:
    from gateway.sidecar import SidecarSettings, serve

    settings = SidecarSettings(
        upstream=args.upstream.rstrip("/"),
        host=args.host,
        port=args.port,
        drain_timeout=args.drain_timeout,
        max_body_bytes=args.max_body_bytes,
    )
    run_loop(serve(settings))
    return 0


def cmd_front_door(args: argparse.Namespace) -> int:
    from gateway.server import serve
    from gateway.settings import FrontDoorSettings
    from policies import ScaleSpec

    upstreams: dict[str, list[str]] = {}
    for item in args.upstream or []:
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            print(
                f"error: --upstream takes NAME=URL (e.g. qwen3-8b=http://127.0.0.1:8000), not {item!r}", file=sys.stderr
            )
            return 2
        upstreams.setdefault(name, []).append(url.rstrip("/"))
    if not upstreams and args.kubeconfig is None and not args.in_cluster:
        print("error: give --upstream NAME=URL, --kubeconfig PATH or --in-cluster", file=sys.stderr)
        return 2
    defaults = ScaleSpec(
        cold_start=args.cold_start,
        heartbeat_interval=args.heartbeat_interval,
        activation_timeout=args.activation_timeout,
        queue_size=args.queue_size,
    )
    settings = FrontDoorSettings(
        host=args.host,
        port=args.port,
        upstreams=upstreams,
        kubeconfig=args.kubeconfig,
        in_cluster=args.in_cluster,
        namespaces=tuple(args.namespace or ()),
        defaults=defaults,
        max_held_total=args.max_held,
        max_body_bytes=args.max_body_bytes,
        body_timeout=args.body_timeout,
        header_timeout=args.header_timeout,
        connect_timeout=args.connect_timeout,
        idle_stream_timeout=args.idle_stream_timeout,
        retries=args.retries,
        scaler_url=args.scaler_url.rstrip("/") if args.scaler_url else None,
        scaler_selector=args.scaler_selector,
        scaler_namespace=args.scaler_namespace,
        scaler_port=args.scaler_port,
        log_level=args.log_level,
    )
    run_loop(serve(settings))
    return 0


def add_dev(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dev = sub.add_parser("dev", help="a real Kubernetes control plane on this machine, with Hearth installed")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)

    def cluster_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--state-dir", type=Path, help="where the cluster keeps its state (default ~/.local/state/hearth/dev)"
        )
        parser.add_argument("--port-base", type=int, default=16400, help="ports are taken from here up (default 16400)")
        parser.add_argument(
            "--pod-net",
            type=int,
            default=10,
            help="numbers this cluster's private ranges: pods 10.(200+N).0.0/16, nodes 172.30.N.0/24 (default 10)",
        )

    build = dev_sub.add_parser(
        "build", help="build the control plane and nodes from Go modules, and Hearth's image, into the cache"
    )
    build.set_defaults(func=cmd_build)
    image = dev_sub.add_parser("image", help="build Hearth's container image (an OCI archive) and print its name")
    image.set_defaults(func=cmd_image)
    for name, func, text in (
        ("up", cmd_up, "start the dev cluster (builds it first if needed)"),
        ("down", cmd_down, "stop the dev cluster; no process is left behind"),
        ("status", cmd_status, "show what is running"),
        ("env", cmd_env, "print shell exports (KUBECONFIG=...)"),
        ("demo", cmd_demo, "start the dev cluster and walk through Hearth on it"),
    ):
        parser = dev_sub.add_parser(name, help=text)
        cluster_flags(parser)
        parser.set_defaults(func=func)

    sim = dev_sub.add_parser("simulator", help="a model simulator speaking vLLM's OpenAI API")
    sim.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0, as vLLM)")  # noqa: S104
    sim.add_argument("--port", type=int, default=8000)
    sim.add_argument("--served-model-name", action="append", required=True)
    sim.add_argument("--model", help="accepted and ignored, as vLLM's flag")
    sim.add_argument("--startup-duration", type=duration, default=0.0, help="/health answers 503 this long")
    sim.add_argument("--ttft", type=duration, default=0.0, help="time to first token")
    sim.add_argument("--itl", type=duration, default=0.0, help="inter-token latency")
    sim.add_argument("--max-num-seqs", type=int, default=256, help="requests served at once; the rest wait")
    sim.add_argument(
        "--fail-start",
        choices=["true", "false"],
        default="false",
        help="after the start-up time, report a dead engine (/health 500) instead of ready",
    )
    sim.set_defaults(func=cmd_simulator)


def add_gateway(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gateway = sub.add_parser("gateway", help="the gateway: front door, and sidecar in model pods")
    gateway_sub = gateway.add_subparsers(dest="gateway_command", required=True)
    sidecar = gateway_sub.add_parser("sidecar", help="front the runtime in a model pod; count and drain")
    sidecar.add_argument("--upstream", required=True, help="the runtime, e.g. http://127.0.0.1:8000")
    sidecar.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    sidecar.add_argument("--port", type=int, default=8090)
    sidecar.add_argument("--drain-timeout", type=duration, default=300.0, help="longest wait for open streams")
    sidecar.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024)
    sidecar.set_defaults(func=cmd_sidecar)

    door = gateway_sub.add_parser("front-door", help="the OpenAI-compatible front door: route, hold, heartbeat")
    door.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    door.add_argument("--port", type=int, default=8080)
    door.add_argument(
        "--upstream",
        action="append",
        metavar="NAME=URL",
        help="a fixed backend outside a cluster, held until its /health answers 200 (repeat; a NAME may repeat)",
    )
    door.add_argument("--kubeconfig", type=Path, help="watch opted-in Deployments and pods with this kubeconfig")
    door.add_argument("--in-cluster", action="store_true", help="watch with the pod's service account")
    door.add_argument("--namespace", action="append", help="only these namespaces (repeat; default: all)")
    door.add_argument("--scaler-url", help="where to push activations at once, e.g. http://hearth-scaler:8081")
    door.add_argument(
        "--scaler-selector",
        help="push activations to every scaler pod with these labels (the leader takes it), "
        "e.g. app.kubernetes.io/name=hearth-scaler",
    )
    door.add_argument("--scaler-namespace", help="where the scaler pods run (default: this pod's namespace)")
    door.add_argument("--scaler-port", type=int, default=8081, help="the scaler pods' port (8081)")
    door.add_argument(
        "--cold-start",
        choices=["keepalive", "reject"],
        default="keepalive",
        help="for --upstream models (Deployments use hearth.dev/cold-start)",
    )
    door.add_argument("--heartbeat-interval", type=duration, default=10.0, help="SSE comment heartbeat (10s)")
    door.add_argument("--activation-timeout", type=duration, default=600.0, help="longest hold (10m)")
    door.add_argument("--queue-size", type=int, default=100, help="held requests per model (100)")
    door.add_argument("--max-held", type=int, default=10_000, help="held requests in total (10000)")
    door.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, help="larger bodies get 413 (8 MiB)")
    door.add_argument("--body-timeout", type=duration, default=30.0, help="longest body upload (30s); then 408")
    door.add_argument("--header-timeout", type=duration, default=10.0, help="longest request-head read (10s)")
    door.add_argument("--connect-timeout", type=duration, default=5.0, help="connecting to a pod (5s)")
    door.add_argument(
        "--idle-stream-timeout", type=duration, default=600.0, help="longest silence from a pod mid-answer (10m)"
    )
    door.add_argument("--retries", type=int, default=3, help="other pods tried when one fails before any byte")
    door.set_defaults(func=cmd_front_door)


def cmd_scaler(args: argparse.Namespace) -> int:
    from scaler.leader import LeaseSettings
    from scaler.server import ScalerSettings, serve

    if args.kubeconfig is None and not args.in_cluster:
        print("error: give --kubeconfig PATH or --in-cluster", file=sys.stderr)
        return 2
    try:
        lease = LeaseSettings(
            name=args.lease_name,
            namespace=args.lease_namespace,
            duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = ScalerSettings(
        host=args.host,
        port=args.port,
        kubeconfig=args.kubeconfig,
        in_cluster=args.in_cluster,
        gateway_urls=tuple(u.rstrip("/") for u in args.gateway_url or ()),
        gateway_selector=args.gateway_selector,
        gateway_namespace=args.gateway_namespace,
        gateway_port=args.gateway_port,
        tick=args.tick,
        identity=args.identity or os.environ.get("POD_NAME") or ScalerSettings().identity,
        lease=lease,
        log_level=args.log_level,
    )
    run_loop(serve(settings))
    return 0


def add_scaler(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    scaler = sub.add_parser("scaler", help="the leader-elected loop that scales Hearth Deployments 0 -> 1 -> N -> 0")
    scaler.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    scaler.add_argument("--port", type=int, default=8081)
    scaler.add_argument("--kubeconfig", type=Path, help="kubeconfig (or --in-cluster)")
    scaler.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    scaler.add_argument("--gateway-url", action="append", help="a front door whose /demand to read (repeat)")
    scaler.add_argument(
        "--gateway-selector",
        help="read /demand from every front-door pod with these labels, e.g. app.kubernetes.io/name=hearth-gateway",
    )
    scaler.add_argument("--gateway-namespace", help="where the front-door pods run (default: this pod's namespace)")
    scaler.add_argument("--gateway-port", type=int, default=8080, help="the front-door pods' port (8080)")
    scaler.add_argument("--tick", type=duration, default=1.0, help="seconds between passes (1s)")
    scaler.add_argument("--identity", help="this replica's name in the Lease (default: host name)")
    scaler.add_argument("--lease-name", default="hearth-scaler")
    scaler.add_argument("--lease-namespace", default="hearth-system")
    scaler.add_argument("--lease-duration", type=duration, default=15.0, help="(15s)")
    scaler.add_argument("--renew-deadline", type=duration, default=10.0, help="a leader stops acting after (10s)")
    scaler.add_argument("--retry-period", type=duration, default=2.0, help="standby retry interval (2s)")
    scaler.set_defaults(func=cmd_scaler)
