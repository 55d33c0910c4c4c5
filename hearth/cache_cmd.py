"""`hearth cache ...`: the node-local model cache (nodecache)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

TERMINATION_LOG = Path("/dev/termination-log")  # the kubelet shows it in the pod's status


def add_cache(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = sub.add_parser("cache", help="the node-local model cache: fetch a model, list the cache")
    jobs = cache.add_subparsers(dest="cache_command", required=True)

    fetch_flags(jobs.add_parser("fetch", help="put a hub model into the node's cache (or find it there)"))

    from hearth.serve_cmd import add_service
    from nodecache.settings import AgentSettings

    def serve_agent(settings: AgentSettings) -> Any:
        from nodecache.agent import serve  # its server's libraries only when it runs

        return serve(settings)

    def missing(settings: AgentSettings) -> str | None:
        if not settings.node:
            return "give --node NAME (or NODE_NAME, from the downward API)"
        return None if settings.kubeconfig or settings.in_cluster else "give --kubeconfig PATH or --in-cluster"

    help_text = "keep this node's cache: label the node, evict, export metrics"
    add_service(jobs, "agent", help_text, AgentSettings, serve_agent, check=missing)

    volume = jobs.add_parser(
        "volume",
        help="print the local PersistentVolume and claim that give a namespace the node cache without a host path "
        "(runtimes with cache.volume: PersistentVolumeClaim); pipe it to kubectl apply -f -",
    )
    volume.add_argument("--namespace", "-n", required=True, help="the model namespace")
    volume.add_argument(
        "--path", default="/var/lib/hearth/models", help="the node folder (the runtimes' cache.hostPath)"
    )
    volume.add_argument("--size", default="50Gi", help="the volume's capacity (the runtimes' cache.size)")
    volume.set_defaults(func=_cmd_volume)

    listing = jobs.add_parser("ls", help="the models in a cache folder: size, last use, state")
    listing.add_argument("--root", type=Path, required=True)
    listing.set_defaults(func=_cmd_ls)


def fetch_flags(fetch: argparse.ArgumentParser) -> None:
    fetch.add_argument(
        "--model", required=True, help="the model URI, e.g. hf://Qwen/Qwen3-8B or modelscope://Qwen/Qwen3-8B"
    )
    fetch.add_argument(
        "--endpoint",
        default=None,
        help="the hub to fetch from (default: huggingface.co or modelscope.cn; HF_ENDPOINT and MODELSCOPE_ENDPOINT "
        "play no part); the cache entry is this hub's own",
    )
    fetch.add_argument("--root", type=Path, required=True, help="the cache folder (the node's host path)")
    fetch.add_argument("--credentials", default="none", help="where the hub token comes from (for error messages)")
    fetch.add_argument("--wait", type=float, default=3600.0, help="longest wait for another fetch of the model")
    fetch.add_argument(
        "--max-age",
        type=float,
        default=None,
        help="seconds a cached copy is served before the hub is asked (one request) whether its revision moved "
        "(default: never ask)",
    )
    fetch.add_argument("--attempts", type=int, default=5, help="tries of an unreachable or failing hub (2 s, doubling)")
    fetch.add_argument(
        "--progress-seconds",
        type=float,
        default=60.0,
        help="a download that advances less than --progress-bytes in this many seconds is stopped",
    )
    fetch.add_argument("--progress-bytes", type=int, default=1 << 20, help="see --progress-seconds (1 MiB)")
    fetch.add_argument(
        "--reserve-bytes", type=int, default=1 << 30, help="disk left free: a larger download is not started (1 GiB)"
    )
    fetch.set_defaults(func=_cmd_fetch)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from nodecache.fetch import Limits, Request, fetch
    from nodecache.store import CacheError, Store

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        limits = Limits(args.progress_bytes, args.progress_seconds, args.reserve_bytes)
        request = Request(args.model, args.endpoint, args.credentials, args.wait, args.attempts, limits, args.max_age)
        fetch(Store(args.root), request, log)
    except CacheError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            TERMINATION_LOG.write_text(str(error))
        return 1
    return 0


def _cmd_volume(args: argparse.Namespace) -> int:
    import yaml

    from policies import local_cache_volumes

    try:
        objects = local_cache_volumes(args.namespace, args.path, args.size)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(yaml.safe_dump_all(objects, sort_keys=False), end="")
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from nodecache.store import Store

    store = Store(args.root)
    print(f"{'MODEL':50} {'SIZE':>10} {'LAST USED':>12} STATE")
    for key in store.models():
        age = time.time() - store.last_used(key)
        state = store.check(key)
        print(f"{key:50} {store.size(key) / 2**30:9.2f}G {age / 60:10.0f}m ago {state.state} {state.reason}")
    return 0
