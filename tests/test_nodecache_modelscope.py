"""The node cache with ModelScope models, and the refresh rule (--max-age) of both hubs: `hearth cache fetch`
in its own process, with the real ModelScope client (modelscope_hub), against `hearth dev hub`, which
speaks ModelScope's API too and counts every request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devcluster.hub import generate_model
from devcluster.weights import load
from nodecache.store import Store, sha256_of
from policies import Collector, cache_key, parse_model_uri
from tests.servers import free_port
from tests.test_nodecache import counts, fetch, finished, serving_hub

pytestmark = pytest.mark.process

TOKEN = "ms-token-of-the-private-model"
SECRET = 'Secret "modelscope" (key token, variable MODELSCOPE_API_TOKEN)'


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("hub")
    for name in ("Moving", "MovingHF"):
        generate_model(folder / "Qwen" / name, 2, shards=2)
    generated = ["--generate=Qwen/Qwen3-8B-Instruct=12", "--generate=Qwen/Private=2", f"--gated=Qwen/Private={TOKEN}"]
    with serving_hub(folder, *generated) as url:
        yield url, folder


@pytest.fixture(scope="module")
def hub(served: tuple[str, Path]) -> str:
    return served[0]


def key_of(hub: str, uri: str) -> str:
    source = parse_model_uri(Collector(), "test", uri)
    assert source is not None
    key = cache_key(source, hub)
    assert key is not None
    return key


def delta(hub: str, before: dict[str, int], name: str) -> int:
    return counts(hub).get(name, 0) - before.get(name, 0)


def test_a_modelscope_model_is_fetched_verified_and_then_served_asking_nothing(hub: str, tmp_path: Path) -> None:
    uri = "modelscope://Qwen/Qwen3-8B-Instruct"  # the announcement's model
    before = counts(hub)
    code, out = finished(fetch(hub, tmp_path, uri))
    assert code == 0, out
    key = key_of(hub, uri)
    assert key.startswith("modelscope/127.0.0.1_")  # its own hub's entry, beside any huggingface/ ones
    entry = tmp_path / key
    assert load(entry, 10_000).bytes > 12 * 2**20
    files = [p for p in entry.iterdir() if p.is_file()]
    assert delta(hub, before, "Qwen/Qwen3-8B-Instruct ms-files") == 1  # one listing, the client reuses it
    assert delta(hub, before, "Qwen/Qwen3-8B-Instruct ms-download") == len(files)
    manifest = Store(tmp_path).manifest(key)
    assert manifest is not None
    assert all(record["sha256"] for record in manifest["files"].values())  # every file checked by its SHA-256

    warm = counts(hub)
    code, out = finished(fetch(hub, tmp_path, uri))
    assert code == 0 and "the hub is not asked" in out, out
    assert counts(hub)["total"] == warm["total"]


def test_two_pods_at_once_download_once_and_a_corrupted_file_is_fetched_alone(hub: str, tmp_path: Path) -> None:
    uri = "modelscope://Qwen/Qwen3-8B-Instruct"
    before = counts(hub)
    results = [finished(p) for p in [fetch(hub, tmp_path, uri), fetch(hub, tmp_path, uri)]]
    assert [code for code, _ in results] == [0, 0], results
    assert delta(hub, before, "Qwen/Qwen3-8B-Instruct ms-files") == 1

    shard = sorted((tmp_path / key_of(hub, uri)).glob("*.safetensors"))[0]
    want = sha256_of(shard)
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    before = counts(hub)
    code, out = finished(fetch(hub, tmp_path, uri))
    assert code == 0 and "repair done" in out, out
    assert delta(hub, before, "Qwen/Qwen3-8B-Instruct ms-download") == 1
    assert sha256_of(shard) == want


def test_a_private_model_names_the_token_variable_or_the_secret_that_did_not_reach_it(hub: str, tmp_path: Path) -> None:
    code, out = finished(fetch(hub, tmp_path, "modelscope://Qwen/Private"))
    assert code == 1
    assert "put MODELSCOPE_API_TOKEN in a Secret" in out
    code, out = finished(
        fetch(hub, tmp_path, "modelscope://Qwen/Private", f"--credentials={SECRET}", env={"MODELSCOPE_API_TOKEN": "x"})
    )
    assert code == 1 and f"refused the token from {SECRET}" in out, out
    code, out = finished(fetch(hub, tmp_path, "modelscope://Qwen/Private", env={"MODELSCOPE_API_TOKEN": TOKEN}))
    assert code == 0, out
    code, out = finished(fetch(hub, tmp_path, "modelscope://Qwen/Nothing"))
    assert code == 1 and "no such model on" in out
    assert not list(tmp_path.glob("modelscope/*/Qwen/Nothing"))


@pytest.mark.parametrize(
    ("uri", "listing"), [("modelscope://Qwen/Moving", "ms-files"), ("hf://Qwen/MovingHF", "info")], ids=["ms", "hf"]
)
def test_max_age_asks_the_hub_once_and_fetches_only_what_a_moved_revision_changed(
    served: tuple[str, Path], tmp_path: Path, uri: str, listing: str
) -> None:
    hub, hub_folder = served
    repo = uri.partition("://")[2]
    assert finished(fetch(hub, tmp_path, uri))[0] == 0
    before = counts(hub)
    code, out = finished(fetch(hub, tmp_path, uri, "--max-age=3600"))
    assert code == 0 and "the hub is not asked" in out, out  # checked less than an hour ago: at its fetch
    assert counts(hub)["total"] == before["total"]

    code, out = finished(fetch(hub, tmp_path, uri, "--max-age=0"))
    assert code == 0 and "the hub's listing is the same" in out, out
    assert delta(hub, before, f"{repo} {listing}") == 1 and counts(hub)["total"] == before["total"] + 1

    entry = tmp_path / key_of(hub, uri)
    old_revision = (Store(tmp_path).manifest(key_of(hub, uri)) or {})["revision"]
    changed = hub_folder / repo / "tokenizer_config.json"
    changed.write_text('{"model_max_length": 4096}\n')
    httpx.post(f"{hub}/_hub/reload").raise_for_status()
    before = counts(hub)
    code, out = finished(fetch(hub, tmp_path, uri, "--max-age=0"))
    assert code == 0 and "the hub moved from revision" in out and "update done" in out, out
    downloads = sum(v for k, v in counts(hub).items() if k.startswith(repo) and "download" in k) - sum(
        v for k, v in before.items() if k.startswith(repo) and "download" in k
    )
    assert downloads == 1  # the one file that changed; the weights stayed
    assert (entry / "tokenizer_config.json").read_text() == changed.read_text()
    assert (Store(tmp_path).manifest(key_of(hub, uri)) or {})["revision"] != old_revision
    assert Store(tmp_path).check(key_of(hub, uri)).state == "hit"

    # A hub that cannot be reached does not stop a start: the copy that is here is served.
    dead = f"http://127.0.0.1:{free_port()}"
    root = tmp_path / "elsewhere"
    assert finished(fetch(hub, root, uri))[0] == 0
    (root / key_of(dead, uri)).parent.mkdir(parents=True)
    (root / key_of(hub, uri)).rename(root / key_of(dead, uri))  # the same entry, now of a hub that is gone
    manifest_file = root / key_of(dead, uri) / ".hearth" / "manifest.json"
    manifest_file.write_text(manifest_file.read_text().replace(key_of(hub, uri), key_of(dead, uri)))
    code, out = finished(fetch(dead, root, uri, "--max-age=0", "--attempts=1"))
    assert code == 0 and "could not ask the hub" in out and "the hub could not be asked" in out, out
