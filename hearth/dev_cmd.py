"""`hearth dev ...`: the local cluster, its image and its model simulator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from common.flags import duration_arg as duration

if TYPE_CHECKING:
    from devcluster.layout import Layout


def _layout(args: argparse.Namespace) -> Layout:
    from devcluster.layout import Layout, default_state_dir

    return Layout.of(args.state_dir or default_state_dir(), args.port_base, args.pod_net)


def cmd_build(args: argparse.Namespace) -> int:
    from devcluster.build import main as build_binaries
    from devcluster.image import main as build_image

    return build_binaries() or build_image()


def cmd_image(args: argparse.Namespace) -> int:
    if args.engine:
        from devcluster.engine import main as build_engine

        return build_engine()
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
    layout.record()  # before starting: a start that fails half-way is stopped by `down` with the same layout
    try:
        cluster = Cluster(layout, ensure_binaries(default_cache_dir()), engine=args.engine is not None)
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
    from devcluster.demo import ENGINE_MANIFEST, MANIFEST, run
    from devcluster.models import ENGINE_RUNTIME

    layout = _layout(args)
    cluster = Cluster(layout)
    if args.engine and ENGINE_RUNTIME not in cluster.runtime_names():
        print(
            "error: the dev cluster already running was started without the engine: `hearth dev down`, then "
            "`hearth dev demo --engine llama.cpp`",
            file=sys.stderr,
        )
        return 1
    print()
    return run(cluster, ENGINE_MANIFEST if args.engine else MANIFEST)


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
        model_dir=Path(args.model) if args.model and Path(args.model).is_dir() else None,
        load_rate_mib=args.load_rate,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_hub(args: argparse.Namespace) -> int:
    import uvicorn

    from devcluster.hub import serve_folder

    try:
        app = serve_folder(args.folder, args.generate or [], args.gated or [], args.generate_gguf or [])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def add_dev(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dev = sub.add_parser("dev", help="a real Kubernetes control plane on this machine, with Hearth installed")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)

    def cluster_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--state-dir", type=Path, help="where the cluster keeps its state (default ~/.local/state/hearth/dev)"
        )
        parser.add_argument(
            "--port-base",
            type=int,
            help="ports are taken from here up (default: what `up` used for this state dir, else 16400)",
        )
        parser.add_argument(
            "--pod-net",
            type=int,
            help="numbers this cluster's private ranges: pods 10.(200+N).0.0/16, nodes 172.30.N.0/24 (default: "
            "what `up` used for this state dir, else 10)",
        )

    build = dev_sub.add_parser(
        "build", help="build the control plane and nodes from Go modules, and Hearth's image, into the cache"
    )
    build.set_defaults(func=cmd_build)
    image = dev_sub.add_parser("image", help="build Hearth's container image (an OCI archive) and print its name")
    image.add_argument(
        "--engine",
        action="store_true",
        help="build the llama.cpp engine's image instead (llama-cpp-python compiled here, about six minutes once)",
    )
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
        if name in ("up", "demo"):
            parser.add_argument(
                "--engine",
                choices=["llama.cpp"],
                help="also a real engine: llama.cpp's server in an image built here (about six minutes, once) and "
                "its runtime llamacpp-nvidia" + ("; the demo's model runs on it" if name == "demo" else ""),
            )
        parser.set_defaults(func=func)

    sim = dev_sub.add_parser("simulator", help="a model simulator speaking vLLM's OpenAI API")
    sim.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0, as vLLM)")  # noqa: S104
    sim.add_argument("--port", type=int, default=8000)
    sim.add_argument("--served-model-name", action="append", required=True)
    sim.add_argument("--model", help="a model folder is loaded before /health answers (else ignored)")
    sim.add_argument("--load-rate", type=float, default=1000.0, help="MiB/s at which a model folder loads")
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

    hub = dev_sub.add_parser("hub", help="a Hugging Face-compatible hub serving generated models (HF_ENDPOINT)")
    hub.add_argument("--folder", type=Path, required=True, help="holds one folder per repository: ORG/NAME/")
    hub.add_argument("--host", default="127.0.0.1")
    hub.add_argument("--port", type=int, default=8088)
    hub.add_argument(
        "--generate", action="append", metavar="ORG/NAME=MIB", help="generate this model if it is not there (repeat)"
    )
    hub.add_argument(
        "--generate-gguf",
        action="append",
        metavar="ORG/NAME=MIB",
        help="generate this llama.cpp model (one GGUF file, random weights) if it is not there (repeat)",
    )
    hub.add_argument("--gated", action="append", metavar="ORG/NAME=TOKEN", help="serve it only with this token")
    hub.set_defaults(func=cmd_hub)
