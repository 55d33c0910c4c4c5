"""The fetcher against a hostile hub: a real HTTP server that speaks the hub's API (devcluster.hub) with
some of its answers made malicious, and `hearth cache fetch` as its own process with the real hub client.

Each case is a way a tenant's hub used to reach other tenants' models or the node: a commit id turned into
paths, file names outside the model's folder, a body larger than listed, a drip that held the model's lock,
a listing larger than the disk, files without hashes, and the tenant's endpoint filling the entry others
load.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from devcluster.hub import Hub, create_app, generate_model, load_repo
from nodecache.store import Store, sha256_of
from tests.servers import free_port
from tests.test_nodecache import counts, fetch, finished, key_of

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

OVERSIZED = 48 << 20  # what the hub sends for a file it lists at 1 KiB
DRIP_SECONDS = 30.0  # the drip stops by itself
NOT_PLAIN = "that is not a plain path inside a model's folder: refused"


@dataclasses.dataclass
class Sent:
    bytes: dict[str, int] = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def _serve(app: object, port: int) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the hostile hub did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Sent]]:
    """A good hub and a hostile one, both serving Org/Small (different bytes), the hostile one also the
    malicious repositories."""
    folder = tmp_path_factory.mktemp("hubs")
    good, evil = Hub(), Hub()
    good.repos["Org/Small"] = load_repo("Org/Small", generate_model(folder / "good" / "Org" / "Small", 2, seed=1))
    evil.repos["Org/Small"] = load_repo("Org/Small", generate_model(folder / "evil" / "Org" / "Small", 2, seed=2))
    for name in ("BadCommit", "Oversized", "Drip", "Huge", "NoHash", "Escape", "Reserved", "Nested", "Glob"):
        evil.repos[f"Evil/{name}"] = load_repo(f"Evil/{name}", generate_model(folder / "evil" / "Evil" / name, 1))
    evil.repos["Evil/BadCommit"].commit = "../../huggingface/Org/Small"
    files = evil.repos["Evil/Oversized"].files
    files["config.json"] = dataclasses.replace(files["config.json"], size=1024)
    files = evil.repos["Evil/Drip"].files
    files["config.json"] = dataclasses.replace(files["config.json"], size=4 << 20)
    files = evil.repos["Evil/Huge"].files
    files["config.json"] = dataclasses.replace(files["config.json"], size=10 << 40)
    files = evil.repos["Evil/NoHash"].files
    files["config.json"] = dataclasses.replace(files["config.json"], blob_id=None, sha256=None)  # type: ignore[arg-type]
    paths = (
        ("Escape", "../../../Org/Small/config.json"),
        ("Reserved", ".hearth/manifest.json"),
        ("Nested", "original/.hearth/manifest.json"),  # would pass for an entry of its own in the cache's listing
        ("Glob", "*"),  # as an allow_pattern it would match any name of the hub's second listing
    )
    for repo, name in paths:
        files = evil.repos[f"Evil/{repo}"].files
        files[name] = dataclasses.replace(files["config.json"], path=name)
    sent = Sent()
    app = create_app(evil)

    @app.middleware("http")
    async def hostile(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if request.method == "GET" and path.endswith("/config.json") and "/resolve/" in path:
            repo = "/".join(path.strip("/").split("/")[:2])
            headers = {"X-Repo-Commit": evil.repos[repo].commit} if repo in evil.repos else {}
            if repo == "Evil/Oversized":
                return StreamingResponse(_endless(sent, repo, OVERSIZED, 1 << 20, 0.0), headers=headers)
            if repo == "Evil/Drip":
                return StreamingResponse(_endless(sent, repo, 1 << 20, 1, 0.5), headers=headers)
        return await call_next(request)

    good_port, evil_port = free_port(), free_port()
    with _serve(create_app(good), good_port), _serve(app, evil_port):
        yield f"http://127.0.0.1:{good_port}", f"http://127.0.0.1:{evil_port}", sent


async def _endless(sent: Sent, repo: str, total: int, chunk: int, pause: float) -> AsyncIterator[bytes]:
    started = time.monotonic()
    while sent.bytes.get(repo, 0) < total and time.monotonic() - started < DRIP_SECONDS:
        sent.bytes[repo] = sent.bytes.get(repo, 0) + chunk
        yield b"x" * chunk
        await asyncio.sleep(pause)


def _scratch(root: Path) -> list[Path]:
    """Downloads in progress or left behind (none once a fetch has ended)."""
    folder = root / ".hearth" / "tmp"
    return list(folder.iterdir()) if folder.is_dir() else []


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_of(p) for p in root.rglob("*") if p.is_file()}


def test_a_tenants_hub_fills_its_own_entry_never_the_one_others_load(
    hubs: tuple[str, str, Sent], tmp_path: Path
) -> None:
    good, evil, _ = hubs
    code, out = finished(fetch(evil, tmp_path, "hf://Org/Small"))  # tenant B, its own hub
    assert code == 0, out
    before = counts(good)
    code, out = finished(fetch(good, tmp_path, "hf://Org/Small"))  # tenant A: not a hit of B's files
    assert code == 0, out
    assert "download done" in out and "the hub is not asked" not in out
    assert counts(good)["Org/Small info"] == before.get("Org/Small info", 0) + 1
    ours, theirs = tmp_path / key_of(good, "Org/Small"), tmp_path / key_of(evil, "Org/Small")
    assert sha256_of(ours / "model-00001-of-00004.safetensors") != sha256_of(
        theirs / "model-00001-of-00004.safetensors"
    )
    assert Store(tmp_path).check(key_of(good, "Org/Small")).state == "hit"
    # HF_ENDPOINT in the environment plays no part: the entry is the --endpoint's.
    code, out = finished(fetch(good, tmp_path, "hf://Org/Small", env={"HF_ENDPOINT": evil}))
    assert code == 0 and "the hub is not asked" in out, out


def test_a_commit_id_that_is_not_40_hex_is_refused_before_anything_is_written(
    hubs: tuple[str, str, Sent], tmp_path: Path
) -> None:
    good, evil, _ = hubs
    assert finished(fetch(good, tmp_path, "hf://Org/Small"))[0] == 0
    victim = _files(tmp_path / key_of(good, "Org/Small"))
    code, out = finished(fetch(evil, tmp_path, "hf://Evil/BadCommit"))
    assert code == 1
    assert "'../../huggingface/Org/Small' as the commit id, which is not 40 hex digits" in out
    assert _files(tmp_path / key_of(good, "Org/Small")) == victim
    assert not (tmp_path / key_of(evil, "Evil/BadCommit")).exists()


@pytest.mark.parametrize(
    ("repo", "said"),
    [
        ("Evil/Escape", f"lists a file '../../../Org/Small/config.json' {NOT_PLAIN}"),
        ("Evil/Reserved", f"lists a file '.hearth/manifest.json' {NOT_PLAIN}"),
        ("Evil/Nested", f"lists a file 'original/.hearth/manifest.json' {NOT_PLAIN}"),
        ("Evil/Glob", f"lists a file '*' {NOT_PLAIN}"),
        ("Evil/NoHash", "gave no hash for config.json; the node cache installs only files it can check"),
        ("Evil/Huge", "needs 10240.00 GiB and the cache's disk has"),
    ],
)
def test_a_listing_the_cache_cannot_hold_safely_is_refused_before_a_download(
    hubs: tuple[str, str, Sent], tmp_path: Path, repo: str, said: str
) -> None:
    _, evil, _ = hubs
    before = counts(evil).get(f"{repo} download", 0)
    code, out = finished(fetch(evil, tmp_path, f"hf://{repo}"))
    assert code == 1 and said in out, out
    assert counts(evil).get(f"{repo} download", 0) == before  # not one file asked for
    assert not (tmp_path / key_of(evil, repo)).exists()
    assert not _scratch(tmp_path)


def test_a_body_larger_than_listed_is_cut_off_at_the_largest_listed_size(
    hubs: tuple[str, str, Sent], tmp_path: Path
) -> None:
    """It used to write all 48 MiB of a file listed at 1 KiB before failing (disk filling)."""
    _, evil, sent = hubs
    code, out = finished(fetch(evil, tmp_path, "hf://Evil/Oversized"))
    assert code == 1
    assert "the hub sent a file larger than the largest it listed (1048576 bytes): stopped" in out, out
    assert sent.bytes["Evil/Oversized"] < OVERSIZED // 2  # the client stopped reading; the rest was never sent
    assert not (tmp_path / key_of(evil, "Evil/Oversized")).exists()
    assert not _scratch(tmp_path)


def test_a_dripping_hub_is_stopped_and_gives_the_models_lock_back(hubs: tuple[str, str, Sent], tmp_path: Path) -> None:
    """A byte every half second used to hold the model's lock as long as the hub liked (others waited up to
    an hour); the download must advance --progress-bytes every --progress-seconds."""
    _, evil, _ = hubs
    code, out = finished(fetch(evil, tmp_path, "hf://Evil/Drip", "--progress-seconds=3", "--attempts=1"))
    assert code == 1
    assert "in 3s, less than 1048576 bytes: stopped (the model's lock is free again)" in out, out
    with Store(tmp_path).try_locked(key_of(evil, "Evil/Drip")) as free:
        assert free
