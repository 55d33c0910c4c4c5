"""A real inference engine for the dev cluster: llama.cpp's OpenAI-compatible server, through
llama-cpp-python[server], in an image built here without a daemon (the same way as Hearth's, see
devcluster/image.py; `Containerfile.llamacpp` is the same recipe for users with a registry).

The recipe, each step cached under `~/.cache/hearth/engine/` by the hash of its inputs:
1. llama-cpp-python's wheel, compiled from its source distribution (llama.cpp inside) by pip with cmake and
   this machine's C++ compiler, for any x86-64 CPU (GGML_NATIVE off), without libcurl or OpenMP (neither is in
   the base): about six minutes on two cores, once per machine;
2. the engine layer: that wheel, its server's dependencies and huggingface_hub (a llama.cpp user's
   `--hf_model_repo_id` downloads its own model) installed for the base's Python into /opt/engine/site;
3. the image: Hearth's Debian base (the same layer as Hearth's image) and the engine layer, user 65532,
   `python3 -m llama_cpp.server` as its entrypoint.
The compiled libraries must run on the base's C and C++ runtimes (Debian bookworm's): the build checks the
symbol versions they ask for and says so when this machine's compiler is newer than the base.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from devcluster import image
from devcluster.image import (
    PYTHON_CONFIG,
    PYTHON_VERSION,
    Image,
    ImageError,
    _assemble,
    _clean_older,
    _run,
    base_key,
    build_and_print,
    ensure_base,
    site_layer,
)

ENGINE_NAME = "localhost/hearth-llamacpp"
LLAMA_CPP_PYTHON = "0.3.36"
CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF",  # any x86-64 CPU, not only this machine's
    "-DLLAMA_CURL=OFF",  # no libcurl in the base; models come from files
    "-DGGML_OPENMP=OFF",  # ggml's own thread pool; no libgomp in the base
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
# What the engine layer holds besides the wheel: its OpenAI server, and the hub client its
# --hf_model_repo_id uses.
EXTRAS = ("huggingface-hub>=0.23,<2",)
# Debian bookworm's runtimes (the base): the newest symbol versions its libc6 and libstdc++6 offer.
BASE_GLIBC = (2, 36)
BASE_GLIBCXX = (3, 4, 30)
SITE = "opt/engine/site"
ENTRYPOINT = ("python3", "-m", "llama_cpp.server")


def wheel_key() -> str:
    return hashlib.sha256(f"{LLAMA_CPP_PYTHON} {' '.join(CMAKE_ARGS)}".encode()).hexdigest()[:12]


def ensure_wheel(cache: Path) -> Path:
    """llama-cpp-python's wheel, compiled once per version and flags."""
    folder = cache / f"wheel-{wheel_key()}"
    found = sorted(folder.glob("llama_cpp_python-*.whl"))
    if found:
        return found[0]
    started = time.monotonic()
    print(f"Building the llama.cpp engine image ({ENGINE_NAME})", flush=True)
    print(f"  llama-cpp-python {LLAMA_CPP_PYTHON}: compiling llama.cpp (about six minutes on two cores)", flush=True)
    partial = folder.with_name(folder.name + ".partial")
    env = dict(os.environ, CMAKE_ARGS=" ".join(CMAKE_ARGS), CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "wheel", "--no-deps"]
    argv += ["--wheel-dir", str(partial), f"llama-cpp-python=={LLAMA_CPP_PYTHON}"]
    _run(argv, "building llama-cpp-python (it needs cmake and a C++ compiler: apt-get install cmake g++)", env)
    partial.rename(folder)
    print(f"  llama-cpp-python compiled in {time.monotonic() - started:.0f}s", flush=True)
    return next(folder.glob("llama_cpp_python-*.whl"))


def _newest(pattern: bytes, data: bytes) -> tuple[int, ...]:
    versions = [tuple(int(p) for p in m.split(b".")) for m in re.findall(pattern, data)]
    return max(versions, default=())


def check_runtimes(libraries: list[Path]) -> None:
    """Refuses libraries that ask for a newer C or C++ runtime than the base has (they would not load)."""
    for library in libraries:
        data = library.read_bytes()
        glibc = _newest(rb"GLIBC_(\d+\.\d+(?:\.\d+)?)\x00", data)
        glibcxx = _newest(rb"GLIBCXX_(\d+\.\d+\.\d+)\x00", data)
        if glibc > BASE_GLIBC or glibcxx > BASE_GLIBCXX:
            asked = ", ".join(
                f"{name} {'.'.join(map(str, v))}" for name, v in (("glibc", glibc), ("libstdc++", glibcxx)) if v
            )
            raise ImageError(
                f"{library.name} was compiled here against {asked}, newer than the image's Debian bookworm "
                f"(glibc {'.'.join(map(str, BASE_GLIBC))}, GLIBCXX {'.'.join(map(str, BASE_GLIBCXX))}): build the "
                "engine image on Debian bookworm (or a system no newer), or from Containerfile.llamacpp"
            )


def _engine_layer(wheel: Path, work: Path) -> Path:
    site = work / "site"
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "install", "--target", str(site)]
    argv += ["--only-binary=:all:", "--implementation=cp", f"--python-version={PYTHON_VERSION}", "--no-compile"]
    # the wheel compiled here is tagged linux_x86_64; its dependencies come as manylinux wheels
    argv += ["--platform=linux_x86_64", "--platform=manylinux2014_x86_64", "--platform=manylinux_2_28_x86_64"]
    _run([*argv, f"{wheel}[server]", *EXTRAS], "pip install (the engine and its server)")
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts name the build machine's Python
    check_runtimes(sorted((site / "llama_cpp" / "lib").glob("*.so*")))
    return site_layer(site, SITE, work / "engine.tar")


def engine_tag(wheel: Path) -> str:
    """The hash of what went in: the base, the wheel, the extras and this recipe (and the image module's)."""
    recipe = [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in (__file__, image.__file__ or "")]
    parts = [base_key(), wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(), *EXTRAS, *recipe]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def ensure_engine_image(cache_root: Path) -> Image:
    """The llama.cpp engine's image, built once per machine and inputs; returned either way."""
    cache = cache_root / "engine"
    cache.mkdir(parents=True, exist_ok=True)
    wheel = ensure_wheel(cache)
    tag = engine_tag(wheel)
    image = Image(f"{ENGINE_NAME}:{tag}", cache / f"llamacpp-{tag}.oci.tar")
    if image.archive.is_file():
        return image
    started = time.monotonic()
    base = ensure_base(cache_root / "image")
    with tempfile.TemporaryDirectory(prefix="hearth-engine-") as tmp:
        layer = _engine_layer(wheel, Path(tmp))
        config = [
            *PYTHON_CONFIG,
            f"--config.env=PYTHONPATH=/{SITE}",
            "--config.env=HOME=/tmp",
            *(f"--config.entrypoint={part}" for part in ENTRYPOINT),
        ]
        _assemble([base, layer], tag, config, image.archive, ENGINE_NAME)
    _clean_older(cache, "llamacpp-*.oci.tar", image.archive)
    print(f"  {image.ref}: {image.size_mib:.0f} MiB compressed, in {time.monotonic() - started:.0f}s", flush=True)
    return image


def main() -> int:
    return build_and_print(ensure_engine_image)
