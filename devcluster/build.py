"""Build the local cluster's binaries from Go modules, once, into a cache keyed by version.

Two cached sets, so that a change to the node parts never rebuilds the control plane:
- the control plane: kube-apiserver, kube-controller-manager and kube-scheduler from k8s.io/kubernetes
  (pinned in devcluster/controlplane/go.mod, every staging module replaced by its published version) and
  etcd from go.etcd.io/etcd/server/v3 (devcluster/etcd/go.mod);
- the node: kubelet and kube-proxy from the same k8s.io/kubernetes module, containerd v2 and its runc shim
  (devcluster/containerd/go.mod), and Hearth's simulated accelerator device plugin and pause process
  (devcluster/nodetools/). runc, the CNI plugins and iptables come from the distribution's packages.
Each set lands in `~/.cache/hearth/<set>/<key>/`, where the key names the versions, the Go toolchain and a
hash of the module files, so CI on the same machine reuses them and a change of pin rebuilds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
CONTAINERD_VERSION = "v2.4.2"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE = ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "hearth-device-plugin", "hearth-pause")


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    """One `go build` of one module: the packages it compiles and the binaries it leaves."""

    module: str  # a folder of devcluster/ holding a go.mod
    packages: tuple[str, ...]
    outputs: tuple[str, ...]
    ldflags: str
    label: str


@dataclass(frozen=True)
class BinarySet:
    name: str  # the cache folder: controlplane | node
    targets: tuple[Target, ...]
    versions: str

    def modules(self) -> list[str]:
        return sorted({t.module for t in self.targets})


@dataclass(frozen=True)
class Binaries:
    folders: tuple[Path, ...]

    def __getitem__(self, name: str) -> Path:
        for folder in self.folders:
            if (folder / name).is_file():
                return folder / name
        raise KeyError(f"{name} is not among the built binaries in {', '.join(map(str, self.folders))}")

    def complete(self) -> bool:
        names = {p.name for folder in self.folders if folder.is_dir() for p in folder.iterdir()}
        return set(CONTROL_PLANE) | {"etcd", *NODE} <= names


def _kube_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (
        f"-s -w -X {pkg}.gitVersion={KUBERNETES_VERSION} -X {pkg}.gitMajor={major} "
        f"-X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
    )


def _kube(commands: tuple[str, ...]) -> Target:
    return Target(
        "controlplane",
        tuple(f"k8s.io/kubernetes/cmd/{c}" for c in commands),
        commands,
        _kube_ldflags(),
        ", ".join(commands),
    )


CONTAINERD = "github.com/containerd/containerd/v2"
SETS = (
    BinarySet(
        "controlplane",
        (
            _kube(CONTROL_PLANE),
            Target("etcd", ("go.etcd.io/etcd/server/v3",), ("etcd",), "-s -w", "etcd"),
        ),
        f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}",
    ),
    BinarySet(
        "node",
        (
            _kube(("kubelet", "kube-proxy")),
            Target(
                "containerd",
                (f"{CONTAINERD}/cmd/containerd", f"{CONTAINERD}/cmd/containerd-shim-runc-v2", f"{CONTAINERD}/cmd/ctr"),
                ("containerd", "containerd-shim-runc-v2", "ctr"),
                f"-s -w -X {CONTAINERD}/version.Version={CONTAINERD_VERSION}",
                "containerd, containerd-shim-runc-v2, ctr",
            ),
            Target(
                "nodetools",
                ("./hearth-device-plugin", "./hearth-pause"),
                ("hearth-device-plugin", "hearth-pause"),
                "-s -w",
                "hearth-device-plugin, hearth-pause",
            ),
        ),
        f"k8s-{KUBERNETES_VERSION}-containerd-{CONTAINERD_VERSION}",
    ),
)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "Go is not installed: the local cluster is built from Go modules (apt-get install golang, or see go.dev)"
        )
    return go


def _go_version() -> str:
    return subprocess.run([_go(), "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def cache_key(binary_set: BinarySet, go_version: str) -> str:
    digest = hashlib.sha256()
    for module in binary_set.modules():
        for path in sorted((HERE / module).rglob("*")):
            if path.is_file() and path.suffix in (".mod", ".sum", ".go"):
                digest.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes())
    return f"{binary_set.versions}-{go_version}-{digest.hexdigest()[:10]}"


def _folder(cache_root: Path, binary_set: BinarySet, go_version: str) -> Path:
    return cache_root / binary_set.name / cache_key(binary_set, go_version)


def binaries(cache_root: Path) -> Binaries:
    go_version = _go_version()
    return Binaries(tuple(_folder(cache_root, s, go_version) for s in SETS))


def _run_go_build(target: Target, out: Path) -> None:
    env = {**os.environ, "CGO_ENABLED": "0"}
    dest = f"{out}/" if len(target.outputs) > 1 else str(out / target.outputs[0])
    cmd = [_go(), "build", "-v", "-trimpath", f"-ldflags={target.ldflags}", "-o", dest, *target.packages]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=HERE / target.module, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    done = threading.Event()

    def progress() -> None:
        while not done.wait(15):
            print(
                f"  ... {target.label}: {len(lines)} packages compiled, {time.monotonic() - started:.0f}s", flush=True
            )

    ticker = threading.Thread(target=progress, daemon=True)
    ticker.start()
    if proc.stdout is None:
        raise BuildError("go build has no output pipe")
    for line in proc.stdout:
        lines.append(line.rstrip())
    code = proc.wait()
    done.set()
    if code != 0:
        tail = "\n".join(lines[-30:])
        raise BuildError(f"go build of {target.label} failed (exit {code}):\n{tail}")
    print(f"  {target.label} built in {time.monotonic() - started:.0f}s", flush=True)


def _ensure_set(cache_root: Path, binary_set: BinarySet, go_version: str) -> Path:
    folder = _folder(cache_root, binary_set, go_version)
    wanted = [name for t in binary_set.targets for name in t.outputs]
    if all((folder / name).is_file() for name in wanted):
        return folder
    print(f"Building the local cluster's {binary_set.name} ({binary_set.versions}) from Go modules", flush=True)
    print(f"  into {folder} (first time only; minutes on 2 cores)", flush=True)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for target in binary_set.targets:
        _run_go_build(target, staging)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    print(f"  {binary_set.name} cached in {folder} ({size:.0f} MiB)", flush=True)
    return folder


def ensure_binaries(cache_root: Path) -> Binaries:
    """Return the cached binaries, building what is missing (minutes the first time, nothing after)."""
    go_version = _go_version()
    return Binaries(tuple(_ensure_set(cache_root, s, go_version) for s in SETS))


def main() -> int:
    from devcluster.layout import default_cache_dir

    try:
        ensure_binaries(default_cache_dir())
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
