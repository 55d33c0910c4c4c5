"""Build the real control plane from Go modules, once, into a cache keyed by version.

kube-apiserver, kube-controller-manager and kube-scheduler come from k8s.io/kubernetes (pinned in
devcluster/controlplane/go.mod, every staging module replaced by its published version); etcd from
go.etcd.io/etcd/server/v3 (devcluster/etcd/go.mod). Binaries land in
`~/.cache/hearth/controlplane/<key>/`, where the key names the versions, the Go toolchain and a hash of
the go.mod/go.sum files, so CI on the same machine reuses them and a change of pin rebuilds.
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
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class Binaries:
    folder: Path

    def __getitem__(self, name: str) -> Path:
        return self.folder / name

    def complete(self) -> bool:
        return all((self.folder / name).is_file() for name in (*CONTROL_PLANE, "etcd"))


class BuildError(RuntimeError):
    pass


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "Go is not installed: the control plane is built from Go modules (apt-get install golang, or see go.dev)"
        )
    return go


def cache_key() -> str:
    go_version = subprocess.run([_go(), "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    digest = hashlib.sha256()
    for module in ("controlplane", "etcd"):
        for name in ("go.mod", "go.sum"):
            digest.update((HERE / module / name).read_bytes())
    return f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-{go_version}-{digest.hexdigest()[:10]}"


def binaries(cache_root: Path) -> Binaries:
    return Binaries(cache_root / "controlplane" / cache_key())


def _run_go_build(module: Path, out: str, packages: list[str], ldflags: str, label: str) -> None:
    env = {**os.environ, "CGO_ENABLED": "0"}
    cmd = [_go(), "build", "-v", "-trimpath", f"-ldflags={ldflags}", "-o", out, *packages]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=module, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    done = threading.Event()

    def progress() -> None:
        while not done.wait(15):
            print(f"  ... {label}: {len(lines)} packages compiled, {time.monotonic() - started:.0f}s", flush=True)

    ticker = threading.Thread(target=progress, daemon=True)
    ticker.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
    code = proc.wait()
    done.set()
    if code != 0:
        tail = "\n".join(lines[-30:])
        raise BuildError(f"go build of {label} failed (exit {code}):\n{tail}")
    print(f"  {label} built in {time.monotonic() - started:.0f}s", flush=True)


def ensure_binaries(cache_root: Path) -> Binaries:
    """Return the cached binaries, building what is missing (minutes the first time, nothing after)."""
    target = binaries(cache_root)
    if target.complete():
        return target
    print(
        f"Building the Kubernetes control plane {KUBERNETES_VERSION} and etcd {ETCD_VERSION} from Go modules",
        flush=True,
    )
    print(f"  into {target.folder} (first time only; about 6-10 minutes on 2 cores)", flush=True)
    staging = target.folder.with_name(target.folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    version_pkg = "k8s.io/component-base/version"
    ldflags = (
        f"-s -w -X {version_pkg}.gitVersion={KUBERNETES_VERSION} -X {version_pkg}.gitMajor={major} "
        f"-X {version_pkg}.gitMinor={minor} -X {version_pkg}.gitTreeState=clean"
    )
    _run_go_build(
        HERE / "controlplane",
        f"{staging}/",
        [f"k8s.io/kubernetes/cmd/{c}" for c in CONTROL_PLANE],
        ldflags,
        "kube-apiserver, kube-controller-manager, kube-scheduler",
    )
    _run_go_build(HERE / "etcd", str(staging / "etcd"), ["go.etcd.io/etcd/server/v3"], "-s -w", "etcd")
    shutil.rmtree(target.folder, ignore_errors=True)
    staging.rename(target.folder)
    size = sum(f.stat().st_size for f in target.folder.iterdir()) / 2**20
    print(f"Control plane cached in {target.folder} ({size:.0f} MiB)", flush=True)
    return target


def main() -> int:
    from devcluster.layout import default_cache_dir

    try:
        ensure_binaries(default_cache_dir())
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
