"""`hearth cache fetch`: put one model into the node's cache, or find it there, before the runtime starts.

Runs as the model pod's init container (and as a prewarm pod). Under the model's lock (one fetch per model
per node; a second pod waits, then finds it complete):
  - a complete entry is a hit: nothing is asked of the hub;
  - otherwise the hub's own client lists the files with their sizes and hashes and downloads them
    (`huggingface_hub.snapshot_download`, honouring HF_ENDPOINT and HF_TOKEN) into a scratch folder; every
    file is checked against the listing, and the folder is renamed into place. Files of a damaged entry that
    are still good are hard-linked into the scratch folder instead of downloaded again.
Errors name their fix: a gated model names the credentials the pod used.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodecache.store import CacheError, Check, Expected, Store, mismatch
from policies import Collector, ModelSource, cache_key, files_to_fetch, parse_model_uri

ATTEMPTS = 5  # tries of the hub when it cannot be reached or answers 5xx, 2 s apart doubling


@dataclass(frozen=True)
class Outcome:
    key: str
    state: str  # hit | download | repair
    path: Path
    downloaded: int = 0  # bytes
    seconds: float = 0.0


def source_of(uri: str) -> tuple[ModelSource, str]:
    errors = Collector()
    source = parse_model_uri(errors, "--model", uri)
    if source is None:
        raise CacheError("; ".join(str(p) for p in errors.problems) or f"bad model URI {uri}")
    key = cache_key(source)
    if key is None:
        raise CacheError(f"{uri}: the node cache holds hub models (hf://ORG/NAME) only")
    return source, key


def fetch(
    store: Store,
    uri: str,
    credentials: str = "none",
    wait: float = 3600.0,
    log: Callable[[str], None] = print,
    attempts: int = ATTEMPTS,
) -> Outcome:
    source, key = source_of(uri)
    started = time.monotonic()
    with store.locked(key, wait, on_wait=lambda: log(f"{key}: another pod of this node is fetching it; waiting")):
        check = store.check(key)
        if check.state == "hit":
            store.touch(key)
            store.record({"key": key, "outcome": "hit", "seconds": round(time.monotonic() - started, 3)})
            log(f"{key}: in the node's cache (revision {check.revision[:12]}); the hub is not asked")
            return Outcome(key, "hit", store.entry(key))
        if check.state == "damaged":
            log(f"{key}: the cached copy is damaged ({check.reason}); fetching what is missing")
        outcome = _download(store, source.path, key, check, _Tries(credentials, log, attempts))
    seconds = time.monotonic() - started
    store.record({"key": key, "outcome": outcome.state, "bytes": outcome.downloaded, "seconds": round(seconds, 3)})
    log(f"{key}: {outcome.state} done, {outcome.downloaded / 2**20:.1f} MiB in {seconds:.1f}s")
    return Outcome(key, outcome.state, outcome.path, outcome.downloaded, seconds)


@dataclass(frozen=True)
class _Tries:
    credentials: str
    log: Callable[[str], None]
    attempts: int


def _download(store: Store, repo: str, key: str, check: Check, tries: _Tries) -> Outcome:
    log = tries.log
    hub = _client(store)
    revision, files = _listing(hub, repo, tries)
    scratch = store.scratch(key)
    try:
        reused = _reuse(store, key, check, revision, files, scratch)
        wanted = [f.path for f in files if f.path not in reused]
        total = sum(f.size for f in files if f.path in wanted)
        log(f"{key}: downloading {len(wanted)} files ({total / 2**20:.1f} MiB) of revision {revision[:12]}")
        with _progress(scratch, key, total, log):
            _attempts(
                lambda: hub.snapshot_download(repo, revision=revision, local_dir=scratch, allow_patterns=wanted),
                repo,
                tries,
            )
        problems = [why for f in files if (why := mismatch(scratch / f.path, f))]
        if problems:
            raise CacheError(f"{key}: the download does not match the hub's listing: " + "; ".join(problems))
        shutil.rmtree(scratch / ".cache", ignore_errors=True)  # the client's own bookkeeping
        store.install(key, scratch, files, revision, f"hf://{repo}")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return Outcome(key, "repair" if reused else "download", store.entry(key), total)


def _reuse(store: Store, key: str, check: Check, revision: str, files: list[Expected], scratch: Path) -> set[str]:
    """Hard-links the good files of a damaged entry of the same revision into `scratch`."""
    if check.state != "damaged" or check.revision != revision:
        return set()
    manifest = store.manifest(key) or {"files": {}}
    reused = set()
    for expected in files:
        record = manifest["files"].get(expected.path)
        same = record is not None and (record.get("sha256"), record.get("blob_id")) == (
            expected.sha256,
            expected.blob_id,
        )
        if same and expected.path in check.good:
            target = scratch / expected.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(store.entry(key) / expected.path, target)
            reused.add(expected.path)
    return reused


class _Hub:
    """The hub client's calls the fetcher makes (huggingface_hub, imported when first needed)."""

    def __init__(self) -> None:
        import huggingface_hub

        self.module = huggingface_hub
        self.api = huggingface_hub.HfApi()

    def model_info(self, repo: str) -> Any:
        return self.api.model_info(repo, files_metadata=True)

    def snapshot_download(self, repo: str, revision: str, local_dir: Path, allow_patterns: list[str]) -> None:
        self.module.snapshot_download(repo, revision=revision, local_dir=local_dir, allow_patterns=allow_patterns)


def _client(store: Store) -> _Hub:
    # The client keeps tokens and transfer caches under HF_HOME; the pod's root file system is read-only,
    # so they go to the cache's own folder. No progress bars in a pod's log.
    os.environ.setdefault("HF_HOME", str(store.meta / "hf-home"))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return _Hub()


def _listing(hub: _Hub, repo: str, tries: _Tries) -> tuple[str, list[Expected]]:
    info = _attempts(lambda: hub.model_info(repo), repo, tries)
    files = []
    for sibling in info.siblings or []:
        if sibling.size is None:
            raise CacheError(f"{repo}: the hub did not report the size of {sibling.rfilename}")
        sha256 = sibling.lfs.sha256 if sibling.lfs is not None else None
        files.append(Expected(sibling.rfilename, int(sibling.size), sha256, sibling.blob_id))
    if not files:
        raise CacheError(f"{repo}: the hub lists no files for it")
    kept = set(files_to_fetch(f.path for f in files))
    if len(kept) < len(files):
        left = sorted(f.path for f in files if f.path not in kept)
        tries.log(
            f"{repo}: safetensors weights are there; left on the hub: {', '.join(left[:5])}"
            + (" ..." if len(left) > 5 else "")
        )
    return str(info.sha), [f for f in files if f.path in kept]


def _attempts(call: Callable[[], Any], repo: str, tries: _Tries) -> Any:
    from huggingface_hub import errors

    credentials, log = tries.credentials, tries.log
    delay = 2.0
    for attempt in range(1, tries.attempts + 1):
        try:
            return call()
        except errors.GatedRepoError:
            raise CacheError(_gated(repo, credentials)) from None
        except errors.RevisionNotFoundError as error:
            raise CacheError(f"{repo}: the hub has no such revision ({error})") from None
        except errors.RepositoryNotFoundError:
            raise CacheError(
                f"{repo}: no such model on {_endpoint()} (or it is private and the credentials, {credentials}, "
                "do not reach it); check the name in hearth.dev/model"
            ) from None
        except Exception as error:
            status = getattr(getattr(error, "response", None), "status_code", None)
            if not isinstance(error, errors.HfHubHTTPError) and not _transport(error):
                raise
            if status is not None and status < 500 and status != 429:
                raise CacheError(f"{repo}: the hub at {_endpoint()} refused: {error}") from None
            if attempt == tries.attempts:
                raise CacheError(f"{repo}: the hub at {_endpoint()} failed {attempt} times: {error}") from None
            log(f"{repo}: the hub failed ({type(error).__name__}: {error}); try {attempt + 1} in {delay:.0f}s")
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _transport(error: BaseException) -> bool:
    """A connection, timeout or protocol failure of the client's HTTP library (worth another try)."""
    return any(kind.__module__.split(".")[0].startswith("httpx") for kind in type(error).__mro__) or isinstance(
        error, ConnectionError | TimeoutError
    )


def _gated(repo: str, credentials: str) -> str:
    if credentials == "none":
        return (
            f"{repo} is gated and the model container has no hub token: put HF_TOKEN in a Secret and give it "
            "to the container (env HF_TOKEN from a secretKeyRef), for a user the repository admits"
        )
    return (
        f"{repo} is gated and the hub refused the token from {credentials}: "
        "ask for access with that user, or fix the Secret"
    )


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


class _progress:
    """Logs the bytes in the scratch folder every few seconds while the client downloads."""

    def __init__(self, scratch: Path, key: str, total: int, log: Callable[[str], None], every: float = 5.0) -> None:
        self.scratch, self.key, self.total, self.log, self.every = scratch, key, total, log, every
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.done.wait(self.every):
            have = sum(p.stat().st_size for p in self.scratch.rglob("*") if p.is_file())
            share = 100 * have / self.total if self.total else 100.0
            self.log(f"{self.key}: {have / 2**20:.1f} of {self.total / 2**20:.1f} MiB ({share:.0f} %)")
