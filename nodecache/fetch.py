"""`hearth cache fetch`: put one model into the node's cache, or find it there, before the runtime starts.

Runs as the model pod's init container (and as a prewarm pod). Under the model's lock (one fetch per model
per hub per node; a second pod waits, then finds it complete):
  - a complete entry is a hit: nothing is asked of the hub (with `--max-age`, once the copy was last
    checked longer ago, the hub is asked for its listing: one request; a moved revision is fetched anew);
  - otherwise the hub's own client (nodecache.hubs: huggingface_hub or modelscope_hub, against
    `--endpoint`, with the hub's token variable) lists the files with their sizes and hashes and downloads
    them into a scratch folder; every file is checked against the listing, and the folder is renamed into
    place. Files of a damaged or outdated entry whose hash is still the listed one are hard-linked into the
    scratch folder instead of downloaded again.

The hub is not trusted beyond the entry of its own endpoint (policies.modelcache.cache_key): a listing is
refused unless its commit id is 40 hex digits, every path is a plain relative path inside the entry and
every file has a hash; a download that would not fit the disk (with a reserve left free) is not started;
the download runs in a child process that cannot write a file past the largest listed size
(RLIMIT_FSIZE), is stopped when the scratch folder grows past the listed total, and is stopped when it
advances less than `progress_bytes` in `progress_seconds` (a hub that drips holds the lock that long, no
longer). Errors name their fix: a gated model names the credentials the pod used.
"""

from __future__ import annotations

import dataclasses
import errno
import multiprocessing
import os
import re
import resource
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from nodecache.hubs import DENIED, MISSING, NO_REVISION, REFUSED, RETRY, HubApi, Listed, client, describe
from nodecache.store import META, CacheError, Check, Expected, Store, free_bytes, mismatch
from policies import HUBS, Collector, ModelSource, cache_key, files_to_fetch, normalize_endpoint, parse_model_uri

ATTEMPTS = 5  # tries of the hub when it cannot be reached or answers 5xx, 2 s apart doubling
SLACK = 1 << 20  # what the client writes beside the files (its metadata), over the listed total
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The listed paths become the client's allow_patterns (fnmatch): a name with a pattern character would let
# through files of the hub's second listing that were never checked here.
_PATTERN_CHARACTERS = frozenset("*?[]")
_RESERVED = (META, ".cache")  # the entries' own records and the client's bookkeeping, at any depth


@dataclass(frozen=True)
class Limits:
    """How much a hub may make the fetcher do: the download must advance `progress_bytes` (or finish)
    every `progress_seconds`, and `reserve_bytes` of the cache's disk stay free."""

    progress_bytes: int
    progress_seconds: float
    reserve_bytes: int


@dataclass(frozen=True)
class Outcome:
    key: str
    state: str  # hit | download | repair | update (a new revision, unchanged files kept)
    path: Path
    downloaded: int = 0  # bytes
    seconds: float = 0.0


def source_of(uri: str, endpoint: str | None) -> tuple[ModelSource, str, str]:
    """The model, its cache key (bound to the endpoint: the hub's own address when None) and the normalized
    endpoint; CacheError if either is not one the node cache holds."""
    errors = Collector()
    source = parse_model_uri(errors, "--model", uri)
    if source is None:
        raise CacheError("; ".join(str(p) for p in errors.problems) or f"bad model URI {uri}")
    if source.kind not in HUBS:
        raise CacheError(f"{uri}: the node cache holds hub models (hf://ORG/NAME, modelscope://ORG/NAME) only")
    raw = endpoint if endpoint is not None else HUBS[source.kind].default_endpoint
    normalized = normalize_endpoint(raw)
    if normalized is None:
        raise CacheError(f"--endpoint {raw!r}: write https://HOST[:PORT][/PATH]")
    key = cache_key(source, normalized)
    if key is None:
        raise CacheError(f"{uri}: the node cache does not hold it")
    return source, key, normalized


@dataclass(frozen=True)
class Request:
    """One fetch: what, from where, with whose credentials (for messages), and its bounds."""

    uri: str
    endpoint: str | None  # None: the hub's own address
    credentials: str
    wait: float
    attempts: int
    limits: Limits
    max_age: float | None = None  # seconds a hit is served before the hub is asked whether it moved


def fetch(store: Store, request: Request, log: Callable[[str], None] = print) -> Outcome:
    source, key, endpoint = source_of(request.uri, request.endpoint)
    started = time.monotonic()
    with store.locked(
        key, request.wait, on_wait=lambda: log(f"{key}: another pod of this node is fetching it; waiting")
    ):
        check = store.check(key)
        tries = _Tries(endpoint, request.credentials, log, request.attempts, source.kind, store.meta)
        listing, asked = None, "the hub is not asked"
        if check.state == "hit" and _due(store, key, request.max_age):
            check, listing = _recheck(store, key, check, source.path, tries)
            asked = "the hub's listing is the same" if listing is not None else "the hub could not be asked"
        if check.state == "hit":
            log(f"{key}: in the node's cache (revision {check.revision[:12]}); {asked}")
            return _served(store, key, started)
        if check.state == "damaged":
            log(f"{key}: the cached copy is damaged ({check.reason}); fetching what is missing")
        try:
            outcome = _download(store, source.path, key, check, tries, request.limits, listing)
        except CacheError as error:
            if check.state != "outdated":
                raise
            # The copy that is here is whole: a new revision that cannot be fetched now waits for the next start.
            log(f"{key}: the new revision could not be fetched ({error}); serving revision {check.revision[:12]}")
            return _served(store, key, started)
    seconds = time.monotonic() - started
    store.record({"key": key, "outcome": outcome.state, "bytes": outcome.downloaded, "seconds": round(seconds, 3)})
    log(f"{key}: {outcome.state} done, {outcome.downloaded / 2**20:.1f} MiB in {seconds:.1f}s")
    return Outcome(key, outcome.state, outcome.path, outcome.downloaded, seconds)


def _served(store: Store, key: str, started: float) -> Outcome:
    """The copy on the node is what the pod loads: a hit (its last use and the event recorded)."""
    store.touch(key)
    store.record({"key": key, "outcome": "hit", "seconds": round(time.monotonic() - started, 3)})
    return Outcome(key, "hit", store.entry(key))


@dataclass(frozen=True)
class _Tries:
    endpoint: str
    credentials: str
    log: Callable[[str], None]
    attempts: int
    kind: str  # huggingface | modelscope
    home: Path  # where the hub's client keeps its settings: the cache's own folder

    def hub(self) -> HubApi:
        return client(self.kind, self.home, self.endpoint)


def _due(store: Store, key: str, max_age: float | None) -> bool:
    return max_age is not None and time.time() - store.checked_at(key) > max_age


def _recheck(
    store: Store, key: str, check: Check, repo: str, tries: _Tries
) -> tuple[Check, tuple[HubApi, str, list[Expected]] | None]:
    """A hit last checked longer ago than --max-age: the hub's listing (one try: a hub that cannot be
    reached does not stop a cached model from starting). The same revision: still a hit, checked now.
    Another: an outdated entry, whose files with unchanged hashes are kept."""
    try:
        hub = tries.hub()
        revision, files = _listing(hub, repo, dataclasses.replace(tries, attempts=1))
    except Exception as error:  # whatever the hub answered: the copy here is whole and verified
        tries.log(f"{key}: could not ask the hub whether the revision moved ({error}); serving the cached copy")
        return check, None
    if revision == check.revision:
        store.mark_checked(key)
        return check, (hub, revision, files)
    tries.log(f"{key}: the hub moved from revision {check.revision[:12]} to {revision[:12]}; fetching what changed")
    manifest = store.manifest(key) or {"files": {}}
    return Check("outdated", "", tuple(manifest["files"]), check.revision), (hub, revision, files)


def _download(
    store: Store,
    repo: str,
    key: str,
    check: Check,
    tries: _Tries,
    limits: Limits,
    listing: tuple[HubApi, str, list[Expected]] | None = None,
) -> Outcome:
    log = tries.log
    hub, revision, files = listing if listing is not None else _listed(tries.hub(), repo, tries)
    scratch = store.scratch(key)
    try:
        reused = _reuse(store, key, check, files, scratch)
        wanted = [f for f in files if f.path not in reused]
        total = sum(f.size for f in wanted)
        free = free_bytes(store.root)
        if total + limits.reserve_bytes > free:
            raise CacheError(
                f"{key}: needs {total / 2**30:.2f} GiB and the cache's disk has {free / 2**30:.2f} GiB free, of "
                f"which {limits.reserve_bytes / 2**30:.2f} GiB stay free: evict models (hearth cache ls) or give "
                "the cache a larger disk"
            )
        log(f"{key}: downloading {len(wanted)} files ({total / 2**20:.1f} MiB) of revision {revision[:12]}")
        largest = max((f.size for f in wanted), default=0)
        listed = [Listed(f.path, f.size, f.sha256, f.blob_id) for f in wanted]
        _bounded(
            lambda: _attempts(lambda: hub.download(repo, revision, scratch, listed), hub, repo, tries),
            _Bounds(key, scratch, total, max(largest, SLACK), limits, log),
        )
        problems = [why for f in files if (why := mismatch(scratch / f.path, f))]
        if problems:
            raise CacheError(f"{key}: the download does not match the hub's listing: " + "; ".join(problems))
        shutil.rmtree(scratch / ".cache", ignore_errors=True)  # the client's own bookkeeping
        store.install(key, scratch, files, revision, f"{tries.endpoint}/{repo}")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    state = "update" if check.state == "outdated" else "repair" if reused else "download"
    return Outcome(key, state, store.entry(key), total)


def _reuse(store: Store, key: str, check: Check, files: list[Expected], scratch: Path) -> set[str]:
    """Hard-links the good files of a damaged or outdated entry whose hash is the listed one into `scratch`
    (a file is its content: the revision it came with does not matter)."""
    if check.state not in ("damaged", "outdated"):
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


def _listed(hub: HubApi, repo: str, tries: _Tries) -> tuple[HubApi, str, list[Expected]]:
    revision, files = _listing(hub, repo, tries)
    return hub, revision, files


def _listing(hub: HubApi, repo: str, tries: _Tries) -> tuple[str, list[Expected]]:
    revision, listed = _attempts(lambda: hub.listing(repo), hub, repo, tries)
    if not _COMMIT.fullmatch(revision):
        raise CacheError(
            f"{repo}: the hub at {tries.endpoint} gave {revision[:60]!r} as the commit id, which is not 40 hex "
            "digits: its files are not fetched"
        )
    files = []
    for entry in listed:
        files.append(_expected(repo, entry, tries.endpoint))
    if not files:
        raise CacheError(f"{repo}: the hub lists no files for it")
    kept = set(files_to_fetch(f.path for f in files))
    if len(kept) < len(files):
        left = sorted(f.path for f in files if f.path not in kept)
        tries.log(
            f"{repo}: safetensors weights are there; left on the hub: {', '.join(left[:5])}"
            + (" ..." if len(left) > 5 else "")
        )
    return revision, [f for f in files if f.path in kept]


def _expected(repo: str, listed: Listed, endpoint: str) -> Expected:
    """One listed file, refused unless it has a size, a hash and a plain path inside the entry."""
    name = str(listed.path)
    parts = name.split("/")
    if (
        not name
        or len(name) > 1024
        or "\\" in name
        or "\0" in name
        or any(part in ("", ".", "..", *_RESERVED) for part in parts)
        or any(char in _PATTERN_CHARACTERS or ord(char) < 32 for char in name)
    ):
        raise CacheError(
            f"{repo}: the hub at {endpoint} lists a file {name[:100]!r} that is not a plain path inside a model's "
            "folder: refused"
        )
    size = listed.size
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CacheError(f"{repo}: the hub at {endpoint} did not report the size of {name}")
    sha256, blob_id = listed.sha256 or None, listed.blob_id or None
    if sha256 is not None and not _SHA256.fullmatch(str(sha256)):
        raise CacheError(f"{repo}: the hub at {endpoint} gave {name} a SHA-256 that is not 64 hex digits")
    if blob_id is not None and not _COMMIT.fullmatch(str(blob_id)):
        raise CacheError(f"{repo}: the hub at {endpoint} gave {name} a blob id that is not 40 hex digits")
    if sha256 is None and blob_id is None:
        raise CacheError(
            f"{repo}: the hub at {endpoint} gave no hash for {name}; the node cache installs only files it can "
            "check (use a hub that reports hashes, or a runtime without spec.cache)"
        )
    return Expected(name, size, None if sha256 is None else str(sha256), None if blob_id is None else str(blob_id))


@dataclass(frozen=True)
class _Bounds:
    key: str
    scratch: Path
    total: int  # bytes listed for download
    largest_file: int  # the child's RLIMIT_FSIZE
    limits: Limits
    log: Callable[[str], None]


def _bounded(call: Callable[[], Any], bounds: _Bounds, every: float = 0.25, report: float = 5.0) -> None:
    """Runs `call` (the download) in a child process and watches the scratch folder: stops it when it
    grows past the listed total or advances too little (Limits), logs progress every `report` seconds.
    The child's CacheError comes back as this process's."""
    context = multiprocessing.get_context("fork")  # the parent has no thread running here
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(call, sender, bounds.largest_file), daemon=True)
    start = _bytes_in(bounds.scratch)  # hard-linked good files of a repair
    child.start()
    sender.close()
    mark, marked, reported = 0, time.monotonic(), time.monotonic()
    try:
        while not receiver.poll(every):
            if not child.is_alive():
                break
            got = _bytes_in(bounds.scratch) - start
            now = time.monotonic()
            if got > bounds.total + SLACK:
                raise CacheError(
                    f"{bounds.key}: the hub sent more than the {bounds.total} bytes it listed ({got} so far): "
                    "stopped, nothing installed"
                )
            step = min(bounds.limits.progress_bytes, max(bounds.total - mark, 0))
            if got - mark >= step:
                mark, marked = got, now
            elif now - marked > bounds.limits.progress_seconds:
                raise CacheError(
                    f"{bounds.key}: the hub sent {got - mark} bytes in {bounds.limits.progress_seconds:.0f}s, less "
                    f"than {bounds.limits.progress_bytes} bytes: stopped (the model's lock is free again)"
                )
            if now - reported >= report:
                reported = now
                share = 100 * got / bounds.total if bounds.total else 100.0
                bounds.log(f"{bounds.key}: {got / 2**20:.1f} of {bounds.total / 2**20:.1f} MiB ({share:.0f} %)")
        try:
            failure = receiver.recv()
        except EOFError:
            failure = f"the download stopped with exit code {child.exitcode}"
        if failure is not None:
            raise CacheError(str(failure))
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()


def _child(call: Callable[[], Any], sender: Connection, largest_file: int) -> None:
    failure: str | None = None
    try:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (largest_file, largest_file))
        call()
    except CacheError as error:
        failure = str(error)
    except OSError as error:
        if error.errno == errno.EFBIG:
            failure = f"the hub sent a file larger than the largest it listed ({largest_file} bytes): stopped"
        else:
            failure = f"{type(error).__name__}: {error}"
    except BaseException as error:
        failure = f"{type(error).__name__}: {error}"
    finally:
        try:
            sender.send(failure)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def _bytes_in(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:  # renamed by the client meanwhile
            continue
    return total


def _attempts(call: Callable[[], Any], hub: HubApi, repo: str, tries: _Tries) -> Any:
    credentials, log, endpoint = tries.credentials, tries.log, tries.endpoint
    delay = 2.0
    for attempt in range(1, tries.attempts + 1):
        try:
            return call()
        except Exception as error:
            meaning = hub.failure(error)
            if meaning is None:
                raise
            if meaning == DENIED:
                raise CacheError(_denied(repo, credentials, hub)) from None
            if meaning == NO_REVISION:
                raise CacheError(f"{repo}: the hub has no such revision ({describe(error)})") from None
            if meaning == MISSING:
                raise CacheError(
                    f"{repo}: no such model on {endpoint} (or it is private and the credentials, {credentials}, "
                    "do not reach it); check the name in hearth.dev/model"
                ) from None
            if meaning == REFUSED:
                raise CacheError(f"{repo}: the hub at {endpoint} refused: {describe(error)}") from None
            assert meaning == RETRY, meaning
            if attempt == tries.attempts:
                raise CacheError(f"{repo}: the hub at {endpoint} failed {attempt} times: {describe(error)}") from None
            log(f"{repo}: the hub failed ({describe(error)}); try {attempt + 1} in {delay:.0f}s")
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _denied(repo: str, credentials: str, hub: HubApi) -> str:
    variable = hub.token_variable
    if credentials == "none":
        return (
            f"{repo} is gated or private and the model container has no hub token: put {variable} in a Secret "
            f"and give it to the container (env {variable} from a secretKeyRef), for a user the repository admits"
        )
    return (
        f"{repo} is gated or private and the hub refused the token from {credentials}: "
        "ask for access with that user, or fix the Secret"
    )
