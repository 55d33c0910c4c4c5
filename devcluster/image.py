"""Build Hearth's container image without a daemon or a registry, the same image that `Containerfile`
describes for users who have both.

The recipe, step by step (each step cached under `~/.cache/hearth/image/` by the hash of its inputs):
1. the base: a minimal Debian root filesystem with Python, made by `mmdebstrap` from Debian's packages;
2. the application: Hearth's wheel and its dependencies, installed by pip for the base's Python (the same
   CPython minor version, manylinux wheels only) into `/opt/hearth/site`, byte-compiled (the root
   filesystem is read-only at run time), with the `hearth` command in `/usr/local/bin`;
3. the image: an OCI image layout assembled by `umoci` (Debian's daemonless OCI image tool), the base and
   the application as two layers, run as the non-root user 65532, written as one OCI archive that
   `ctr images import` loads into a node's containerd.
The tag is the hash of everything that went in, so a changed source is a new tag and no node ever runs a
stale image under an old name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"  # Debian 12: CPython 3.11, the version the wheels below are chosen for
PYTHON_VERSION = "3.11"
# libstdc++6: the C++ runtime of pysimdjson (the relay's JSON check), which Debian's essential set lacks.
BASE_PACKAGES = ("python3", "libstdc++6")
MIRROR = "http://deb.debian.org/debian"
IMAGE_NAME = "localhost/hearth"
PAUSE_NAME = "localhost/hearth-pause"
USER = 65532
SOURCES = (
    "pyproject.toml",
    "hearth",
    "common",
    "policies",
    "webhook",
    "certs",
    "scaler",
    "gateway",
    "devcluster",
    "nodecache",
)
# What a slim image leaves out of the base (documentation, manuals, translations).
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
# Parts of dependencies that Hearth never imports, left out of the image: the kubernetes client's asyncio
# twin (68 MiB with its byte code; Hearth runs the synchronous client in threads).
PRUNED = ("kubernetes/aio",)
# What every Python image built here runs with (Hearth's, and the engine's: devcluster/engine.py).
PYTHON_CONFIG = (
    f"--config.user={USER}:{USER}",
    "--config.env=PATH=/usr/local/bin:/usr/bin:/bin",
    "--config.env=PYTHONDONTWRITEBYTECODE=1",
    "--config.env=PYTHONUNBUFFERED=1",
    "--config.workingdir=/",
)
# The command the image runs; the manifests say `command: [hearth]`.
LAUNCHER = Path(__file__).resolve().parent / "launcher.py"


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    ref: str  # localhost/hearth:<tag>
    archive: Path  # an OCI archive for `ctr images import`

    @property
    def size_mib(self) -> float:
        return self.archive.stat().st_size / 2**20


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ImageError(
            f"{name} is not installed: apt-get install {package} (the image is built from Debian's packages)"
        )
    return path


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise ImageError(f"{what} failed (exit {result.returncode}):\n{tail}")


def _digest(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:12]


def source_files() -> list[Path]:
    files: list[Path] = []
    for name in SOURCES:
        path = REPO / name
        if path.is_file():
            files.append(path)
            continue
        files.extend(
            p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
    return files


def base_key() -> str:
    parts = [SUITE, "essential", "merged-usr", *BASE_PACKAGES, *DPKG_EXCLUDES]
    return _digest([p.encode() for p in parts])


def image_tag() -> str:
    return _digest([base_key().encode(), *(str(p.relative_to(REPO)).encode() + p.read_bytes() for p in source_files())])


def ensure_base(cache: Path) -> Path:
    """The Debian root filesystem as a tar, made once per package list."""
    target = cache / f"base-{SUITE}-{base_key()}.tar"
    if target.is_file():
        return target
    mmdebstrap = _tool("mmdebstrap", "mmdebstrap")
    print(f"  base: Debian {SUITE} with {', '.join(BASE_PACKAGES)} (mmdebstrap, about a minute)", flush=True)
    partial = target.with_name(target.stem + ".partial.tar")  # mmdebstrap picks its format by suffix
    # essential: Debian's Essential packages and no apt (an image never installs packages at run time);
    # the merged-usr hook instead of the usrmerge package, which drags perl in (70 MiB smaller).
    argv = [
        mmdebstrap,
        "--variant=essential",
        f"--include={','.join(BASE_PACKAGES)}",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        "--quiet",
    ]
    argv += [f"--dpkgopt=path-exclude={e}" for e in DPKG_EXCLUDES]
    _run([*argv, SUITE, str(partial), MIRROR], "mmdebstrap")
    partial.rename(target)
    return target


def _app_layer(work: Path) -> Path:
    """Hearth and its dependencies for the base's Python, as an uncompressed layer tar."""
    wheels = work / "wheels"
    site = work / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    source = work / "src"  # setuptools writes build/ beside the sources: build from a copy
    for name in (*SOURCES, "README.md"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    _run([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(source)], "pip wheel (Hearth)")
    wheel = next(wheels.glob("hearth-*.whl"))
    _run(
        [
            *pip,
            "install",
            "--target",
            str(site),
            "--only-binary=:all:",
            "--platform=manylinux2014_x86_64",
            "--platform=manylinux_2_28_x86_64",
            f"--python-version={PYTHON_VERSION}",
            "--implementation=cp",
            "--no-compile",
            str(wheel),
        ],
        "pip install (Hearth's dependencies for the image)",
    )
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts name the build machine's Python
    for unused in PRUNED:
        shutil.rmtree(site / unused, ignore_errors=True)
    layer = site_layer(site, "opt/hearth/site", work / "app.tar")
    with tarfile.open(layer, "a", format=tarfile.PAX_FORMAT) as tar:
        launcher = LAUNCHER.read_bytes()
        info = tarfile.TarInfo("usr/local/bin/hearth")
        info.size, info.mode = len(launcher), 0o755
        tar.addfile(info, io.BytesIO(launcher))
    return layer


def site_layer(site: Path, arcname: str, layer: Path) -> Path:
    """`site` byte-compiled for the image's CPython (3.11 pyc files are the same for every 3.11 patch
    release; unchecked hashes, because the root filesystem is read-only and mtimes are irrelevant there),
    as an uncompressed layer tar at `arcname`, owned by root."""
    _run(
        [sys.executable, "-m", "compileall", "-q", "-j0", "--invalidation-mode=unchecked-hash", str(site)],
        "compileall",
    )

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(site, arcname=arcname, filter=owned_by_root)
    return layer


def _named(index: dict[str, Any], ref: str) -> dict[str, Any]:
    """An OCI index whose manifests are named `ref`: umoci names an image by its tag alone, and containerd
    takes the full name from these annotations."""
    for manifest in index["manifests"]:
        annotations = manifest.setdefault("annotations", {})
        annotations["io.containerd.image.name"] = ref
        annotations["org.opencontainers.image.ref.name"] = ref
    return index


def _assemble(layers: list[Path], tag: str, config: list[str], out: Path, name: str) -> None:
    """An OCI archive of these layers, named `name:tag` for `ctr images import`."""
    umoci = _tool("umoci", "umoci")
    with tempfile.TemporaryDirectory(prefix="hearth-oci-") as tmp:
        layout = Path(tmp) / "oci"
        ref = f"{layout}:{tag}"
        _run([umoci, "init", "--layout", str(layout)], "umoci init")
        _run([umoci, "new", "--image", ref], "umoci new")
        for layer in layers:
            _run([umoci, "raw", "add-layer", "--image", ref, str(layer)], f"umoci add-layer ({layer.name})")
        _run([umoci, "config", "--image", ref, *config], "umoci config")
        _run([umoci, "gc", "--layout", str(layout)], "umoci gc")
        index_file = layout / "index.json"
        index_file.write_text(json.dumps(_named(json.loads(index_file.read_text()), f"{name}:{tag}")))
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            for entry in sorted(os.listdir(layout)):
                tar.add(layout / entry, arcname=entry)
        partial.rename(out)


def retagged(image: Image, tag: str, folder: Path) -> Image:
    """The same image under another tag, as a release of unchanged code would be: its OCI archive copied
    into `folder` with only the names in its index rewritten (the layers, config and manifest are the same
    blobs). The soak upgrades Hearth to it under traffic (devcluster/chaos.py)."""
    name = image.ref.rsplit(":", 1)[0]
    out = folder / f"{name.rsplit('/', 1)[-1]}-{tag}.oci.tar"
    folder.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(image.archive) as source, tarfile.open(partial, "w") as copy:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == "index.json" and data is not None:
                body = json.dumps(_named(json.load(data), f"{name}:{tag}")).encode()
                member.size = len(body)
                data = io.BytesIO(body)
            copy.addfile(member, data)
    partial.rename(out)
    return Image(f"{name}:{tag}", out)


def _clean_older(cache: Path, pattern: str, keep: Path) -> None:
    for old in cache.glob(pattern):
        if old != keep:
            old.unlink()


def ensure_image(cache_root: Path) -> Image:
    """Build Hearth's image if its sources changed since the last build; return it either way."""
    cache = cache_root / "image"
    cache.mkdir(parents=True, exist_ok=True)
    tag = image_tag()
    image = Image(f"{IMAGE_NAME}:{tag}", cache / f"hearth-{tag}.oci.tar")
    if image.archive.is_file():
        return image
    started = time.monotonic()
    print(f"Building Hearth's image {image.ref}", flush=True)
    base = ensure_base(cache)
    with tempfile.TemporaryDirectory(prefix="hearth-image-") as tmp:
        print("  application layer: Hearth's wheel and its dependencies (pip)", flush=True)
        app = _app_layer(Path(tmp))
        config = [*PYTHON_CONFIG, "--config.entrypoint=hearth", "--config.cmd=--help"]
        _assemble([base, app], tag, config, image.archive, IMAGE_NAME)
        unpacked = (base.stat().st_size + app.stat().st_size) / 2**20
    _clean_older(cache, "hearth-*.oci.tar", image.archive)
    print(
        f"  {image.ref}: {unpacked:.0f} MiB unpacked, {image.size_mib:.0f} MiB compressed, "
        f"in {time.monotonic() - started:.0f}s",
        flush=True,
    )
    return image


def ensure_pause_image(cache_root: Path, pause_binary: Path) -> Image:
    """The pod sandbox image: one static binary that holds a pod's namespaces (see nodetools/hearth-pause)."""
    cache = cache_root / "image"
    cache.mkdir(parents=True, exist_ok=True)
    binary = pause_binary.read_bytes()
    tag = hashlib.sha256(binary).hexdigest()[:12]
    image = Image(f"{PAUSE_NAME}:{tag}", cache / f"pause-{tag}.oci.tar")
    if image.archive.is_file():
        return image
    with tempfile.TemporaryDirectory(prefix="hearth-pause-") as tmp:
        layer = Path(tmp) / "pause.tar"
        with tarfile.open(layer, "w") as tar:
            info = tarfile.TarInfo("pause")
            info.size, info.mode = len(binary), 0o755
            tar.addfile(info, io.BytesIO(binary))
        _assemble([layer], tag, ["--config.user=65535:65535", "--config.entrypoint=/pause"], image.archive, PAUSE_NAME)
    _clean_older(cache, "pause-*.oci.tar", image.archive)
    return image


def build_and_print(build: Callable[[Path], Image]) -> int:
    """`hearth dev image [--engine]`: build into the cache (if needed), print the image's name."""
    from devcluster.layout import default_cache_dir

    try:
        image = build(default_cache_dir())
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(image.ref)
    return 0


def main() -> int:
    return build_and_print(ensure_image)
