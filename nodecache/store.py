"""One node's model cache on disk: complete entries, the lock per model, the record of what happened.

    <root>/<key>/                      a complete model (key: huggingface/<hub id>/ORG/NAME), read-only to pods
    <root>/<key>/.hearth/manifest.json what was verified: every file's size and hash, and its inode and
                                       modification time then (a file changed since is hashed again)
    <root>/<key>/.hearth/last-used     touched on every hit: the eviction order
    <root>/.hearth/locks/<digest>      flock(2) per model: one fetch per model per node, and no eviction
                                       while a fetch holds it (every pod of the node sees the same inode)
    <root>/.hearth/tmp/                downloads in progress: never read, renamed into place when verified
    <root>/.hearth/events.jsonl        one line per fetch (hit, download, repair), read by the node agent

A file is whole when its size and hash are what the hub reported: the hash (SHA-256 for LFS files, git's
blob id for the rest) is computed at download; on a hit only the sizes, inodes and modification times are
compared, and a file whose stat changed is hashed again before it is trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 8 << 20
META = ".hearth"
EVENTS_LIMIT = 1 << 20  # the event log is rotated past 1 MiB (the agent reads it every few seconds)


class CacheError(RuntimeError):
    pass


@dataclass(frozen=True)
class Expected:
    """A file as the hub describes it."""

    path: str
    size: int
    sha256: str | None  # LFS files
    blob_id: str | None  # git's object id, for the others


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file (what the hub reports for an LFS file: its ETag and `lfs.sha256`)."""
    return _digest_of(path, hashlib.sha256())


def git_blob_id(path: Path) -> str:
    """Git's object id of a file (what the hub reports as a non-LFS file's blob id and ETag)."""
    return _digest_of(path, hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False))


def _digest_of(path: Path, digest: Any) -> str:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return str(digest.hexdigest())


def mismatch(path: Path, expected: Expected) -> str | None:
    """Why `path` is not the file the hub described, or None when it is."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{expected.path} is missing"
    if size != expected.size:
        return f"{expected.path} has {size} bytes, the hub says {expected.size}"
    if expected.sha256 is not None:
        want, got = expected.sha256, sha256_of(path)
    elif expected.blob_id is not None:
        want, got = expected.blob_id, git_blob_id(path)
    else:
        return f"{expected.path} has no hash to check it against"
    if got != want:
        return f"{expected.path} does not match its hash {want[:16]}..."
    return None


@dataclass(frozen=True)
class Check:
    """What the cache holds for a model: complete, absent, or damaged (and which files are still good)."""

    state: str  # hit | missing | damaged | outdated (the hub's revision moved; fetch.py)
    reason: str = ""
    good: tuple[str, ...] = ()
    revision: str = ""


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = root / META

    def entry(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise CacheError(f"{key!r} is not a folder under the cache")
        return path

    def _digest(self, key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    @contextlib.contextmanager
    def locked(self, key: str, wait: float, on_wait: Any = None) -> Iterator[None]:
        """Holds the model's lock; waits at most `wait` seconds for another holder (then CacheError)."""
        locks = self.meta / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with (locks / self._digest(key)).open("a") as handle:
            deadline = time.monotonic() + wait
            told = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CacheError(f"another fetch of {key} on this node held it for {wait:.0f}s") from None
                    if not told and on_wait is not None:
                        on_wait()
                        told = True
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def try_locked(self, key: str) -> contextlib.AbstractContextManager[bool]:
        """The model's lock if nobody holds it (True), else nothing (False); for the node agent."""
        return _try_lock(self.meta / "locks" / self._digest(key))

    def manifest(self, key: str) -> dict[str, Any] | None:
        try:
            loaded = json.loads((self.entry(key) / META / "manifest.json").read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def check(self, key: str) -> Check:
        """Whether `key` is here complete; only files whose stat changed since verification are hashed."""
        folder = self.entry(key)
        manifest = self.manifest(key)
        if manifest is None or manifest.get("key") != key:
            reason = "an unfinished or foreign folder is in its place" if folder.exists() else ""
            return Check("damaged" if folder.exists() else "missing", reason)
        good: list[str] = []
        problems: list[str] = []
        for name, record in manifest["files"].items():
            path = folder / name
            expected = Expected(name, record["size"], record.get("sha256"), record.get("blob_id"))
            try:
                stat = path.stat()
            except FileNotFoundError:
                problems.append(f"{name} is missing")
                continue
            if stat.st_size != expected.size:
                problems.append(f"{name} has {stat.st_size} bytes, the hub says {expected.size}")
            elif [stat.st_ino, stat.st_mtime_ns] != record["stat"] and (why := mismatch(path, expected)):
                problems.append(why)
            else:
                good.append(name)
        revision = str(manifest.get("revision", ""))
        if problems:
            return Check("damaged", "; ".join(problems), tuple(good), revision)
        return Check("hit", revision=revision)

    def scratch(self, key: str) -> Path:
        """A new folder for a download of `key`, on the cache's own file system (renamed into place)."""
        folder = self.meta / "tmp" / f"{self._digest(key)}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def install(self, key: str, scratch: Path, files: list[Expected], revision: str, source: str) -> None:
        """Records what was verified in `scratch` and renames it into place, replacing an old entry."""
        records = {}
        for expected in files:
            stat = (scratch / expected.path).stat()
            records[expected.path] = {
                "size": expected.size,
                "sha256": expected.sha256,
                "blob_id": expected.blob_id,
                "stat": [stat.st_ino, stat.st_mtime_ns],
            }
        (scratch / META).mkdir(exist_ok=True)
        manifest = {"key": key, "revision": revision, "source": source, "fetched": time.time(), "files": records}
        (scratch / META / "manifest.json").write_text(json.dumps(manifest, indent=1))
        (scratch / META / "last-used").touch()
        target = self.entry(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if target.exists():
            old = self.meta / "tmp" / f"old-{uuid.uuid4().hex[:8]}"
            target.rename(old)
        scratch.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # a running pod keeps its open files (same inodes)

    def _stamped(self, key: str, stamp: str) -> float | None:
        """When the entry's stamp file (`last-used`, `checked`) was last touched, if it exists."""
        try:
            return (self.entry(key) / META / stamp).stat().st_mtime
        except FileNotFoundError:
            return None

    def touch(self, key: str) -> None:
        (self.entry(key) / META / "last-used").touch()

    def mark_checked(self, key: str) -> None:
        """The hub was asked now and its listing is still the entry's."""
        (self.entry(key) / META / "checked").touch()

    def checked_at(self, key: str) -> float:
        """When the hub last confirmed the entry: its fetch, or the last time it was asked since."""
        checked = self._stamped(key, "checked")
        return checked if checked is not None else float((self.manifest(key) or {}).get("fetched") or 0.0)

    def last_used(self, key: str) -> float:
        used = self._stamped(key, "last-used")
        return 0.0 if used is None else used

    def models(self) -> list[str]:
        """The complete entries (folders with a manifest Hearth wrote for that key), by key: the entries of
        each hub (huggingface/<hub id>/ORG/NAME) and those of releases before entries were bound to their
        hub (huggingface/ORG/NAME), which no fetch loads any more and eviction removes in their turn."""
        found = []
        for pattern in (f"*/*/*/*/{META}/manifest.json", f"*/*/*/{META}/manifest.json"):
            for manifest in self.root.glob(pattern):
                key = manifest.parent.parent.relative_to(self.root).as_posix()
                if not key.startswith(".") and (self.manifest(key) or {}).get("key") == key:
                    found.append(key)
        return sorted(found)

    def size(self, key: str) -> int:
        manifest = self.manifest(key) or {"files": {}}
        return sum(int(r["size"]) for r in manifest["files"].values())

    def remove(self, key: str) -> None:
        """Moves the entry out of sight first (one rename), then deletes it."""
        target = self.entry(key)
        gone = self.meta / "tmp" / f"evicted-{uuid.uuid4().hex[:8]}"
        gone.parent.mkdir(parents=True, exist_ok=True)
        target.rename(gone)
        shutil.rmtree(gone, ignore_errors=True)
        with contextlib.suppress(OSError):  # empty organisation folders go too
            target.parent.rmdir()

    def sweep_dead(self, older_than: float = 600.0) -> int:
        """Removes the scratch folders of fetches that died: a download's folder whose model lock nobody
        holds (a live fetch holds it from start to rename), and leftovers of replaced or evicted entries
        older than `older_than` seconds (their deletion was interrupted)."""
        removed = 0
        now = time.time()
        for folder in (self.meta / "tmp").glob("*"):
            digest, _, _ = folder.name.partition("-")
            try:
                if digest in ("old", "evicted"):
                    dead = now - folder.stat().st_mtime > older_than
                else:
                    with _try_lock(self.meta / "locks" / digest) as free:
                        dead = free
            except FileNotFoundError:
                continue
            if dead:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def record(self, event: dict[str, Any]) -> None:
        """Appends one line to the event log (rotated past EVENTS_LIMIT: the agent may miss a few lines)."""
        log = self.meta / "events.jsonl"
        self.meta.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if log.stat().st_size > EVENTS_LIMIT:
                log.replace(self.meta / "events.jsonl.1")
        with log.open("a") as handle:
            handle.write(json.dumps({"time": time.time(), **event}) + "\n")


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize
