"""Small Go programs the tests and benchmarks run (the load generator, the policy engine, Helm), built once
into the user's cache with the machine's Go, keyed by the hash of their sources."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path


def go_tool(source: Path, package: str = ".") -> Path:
    """Build the Go program in `source` (a folder with its go.mod; `package` names a required module's
    command instead of the folder's own) once into the user's cache, keyed by the hash of its sources;
    later calls return the cached binary."""
    files = [source / "go.mod", *sorted(source.glob("go.sum")), *sorted(source.glob("*.go"))]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files) + package.encode()).hexdigest()[:12]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hearth" / "bench"
    cache = root / f"{source.name}-{digest}"
    if not cache.exists():
        go = shutil.which("go")
        if go is None:
            raise SystemExit(f"Go is needed to build {source.name} (apt-get install golang, or see go.dev)")
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.name + ".partial")
        subprocess.run(
            [go, "build", "-o", str(partial), package],
            cwd=source,
            check=True,
            env={**os.environ, "CGO_ENABLED": "0"},
        )
        partial.rename(cache)  # a build cut short never passes for a finished one
    return cache


def loadgen() -> Path:
    """The project's Go load generator (bench/loadgen)."""
    return go_tool(Path(__file__).resolve().parent.parent / "bench" / "loadgen")
