"""The node cache's fetcher against a real hub process, with the real hub client (huggingface_hub).

`hearth dev hub` serves generated models over HTTP on loopback; `hearth cache fetch` runs as the init
container runs it (its own process, HF_ENDPOINT and HF_TOKEN from the environment). The hub counts every
request, which is how "a warm start asks the hub nothing" is proven.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devcluster.hub import generate_model
from devcluster.weights import LoadError, load
from nodecache.store import Store, sha256_of
from policies import Collector, cache_key, parse_model_uri
from policies.modelcache import Entry, evictions, files_to_fetch
from tests.servers import free_port, hearth_process

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

TOKEN = "hf_test_token_for_the_gated_model"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("hub")
    mixed = generate_model(folder / "Org" / "Mixed", 4, shards=2)  # safetensors and other weight formats
    (mixed / "pytorch_model.bin").write_bytes(b"\0" * 2**20)
    (mixed / "original").mkdir()
    (mixed / "original" / "consolidated.00.pth").write_bytes(b"\0" * 2**20)
    (mixed / "original" / "params.json").write_text("{}")
    with serving_hub(folder, "--generate=Org/Small=24", "--generate=Org/Gated=2", f"--gated=Org/Gated={TOKEN}") as url:
        yield url


@contextlib.contextmanager
def serving_hub(folder: Path, *args: str) -> Iterator[str]:
    """`hearth dev hub` over `folder` (with `args`: --generate, --gated) on a free port: its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = ["dev", "hub", f"--folder={folder}", f"--port={port}", *args]
    with hearth_process(argv, f"{url}/_hub/health", False, folder / "hub.log"):
        yield url


def counts(hub: str) -> dict[str, int]:
    answer: dict[str, int] = httpx.get(f"{hub}/_hub/requests").json()
    return answer


def fetch(
    hub: str, root: Path, model: str, *extra: str, token: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`hearth cache fetch` as the init container runs it: the hub as --endpoint, the token in HF_TOKEN."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_", "MODELSCOPE_"))}
    environ.update(env or {})
    if token is not None:
        environ["HF_TOKEN"] = token
    argv = [
        sys.executable,
        "-m",
        "hearth",
        "cache",
        "fetch",
        f"--model={model}",
        f"--endpoint={hub}",
        f"--root={root}",
        "--reserve-bytes=0",
        *extra,
    ]
    return subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def key_of(hub: str, repo: str) -> str:
    """The cache entry of `repo` fetched from `hub` (as the webhook renders it for the model container)."""
    source = parse_model_uri(Collector(), "test", f"hf://{repo}")
    assert source is not None
    key = cache_key(source, hub)
    assert key is not None
    return key


def finished(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def test_a_fetch_verifies_and_a_second_one_asks_the_hub_nothing(hub: str, tmp_path: Path) -> None:
    before = counts(hub)
    code, out = finished(fetch(hub, tmp_path, "hf://Org/Small"))
    assert code == 0, out
    entry = tmp_path / key_of(hub, "Org/Small")
    assert (entry / "config.json").is_file()
    assert load(entry, 10_000).bytes > 24 * 2**20  # a whole model the simulator loads
    after_download = counts(hub)
    downloads = after_download.get("Org/Small download", 0) - before.get("Org/Small download", 0)
    assert downloads == len([p for p in entry.iterdir() if p.is_file()])  # each file once
    assert not list((tmp_path / ".hearth" / "tmp").iterdir())  # no scratch left behind

    code, out = finished(fetch(hub, tmp_path, "hf://Org/Small"))
    assert code == 0, out
    assert "the hub is not asked" in out
    assert counts(hub).get("total") == after_download.get("total")  # not one request
    assert Store(tmp_path).check(key_of(hub, "Org/Small")).state == "hit"


def test_two_pods_starting_at_once_download_once(hub: str, tmp_path: Path) -> None:
    before = counts(hub)
    first, second = fetch(hub, tmp_path, "hf://Org/Small"), fetch(hub, tmp_path, "hf://Org/Small")
    results = [finished(first), finished(second)]
    assert [code for code, _ in results] == [0, 0], results
    outs = " ".join(out for _, out in results)
    assert "download done" in outs and "the hub is not asked" in outs
    files = [p for p in (tmp_path / key_of(hub, "Org/Small")).iterdir() if p.is_file()]
    assert counts(hub)["Org/Small download"] - before.get("Org/Small download", 0) == len(files)
    assert counts(hub)["Org/Small info"] - before.get("Org/Small info", 0) == 1


def test_a_truncated_or_corrupted_file_is_fetched_again_and_only_it(hub: str, tmp_path: Path) -> None:
    assert finished(fetch(hub, tmp_path, "hf://Org/Small"))[0] == 0
    entry = tmp_path / key_of(hub, "Org/Small")
    truncated, flipped = sorted(entry.glob("*.safetensors"))[:2]
    want = {p.name: sha256_of(p) for p in (truncated, flipped)}
    with truncated.open("r+b") as handle:
        handle.truncate(truncated.stat().st_size // 2)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash tells
    flipped.write_bytes(bytes(data))
    check = Store(tmp_path).check(key_of(hub, "Org/Small"))
    assert check.state == "damaged" and truncated.name in check.reason and flipped.name in check.reason
    with pytest.raises(LoadError):  # the runtime would fail on it
        load(entry, 10_000)

    before = counts(hub)
    code, out = finished(fetch(hub, tmp_path, "hf://Org/Small"))
    assert code == 0, out
    assert "repair done" in out
    assert counts(hub)["Org/Small download"] - before["Org/Small download"] == 2  # the good files stayed
    assert {p.name: sha256_of(p) for p in (truncated, flipped)} == want
    assert Store(tmp_path).check(key_of(hub, "Org/Small")).state == "hit"


def test_a_gated_model_without_credentials_fails_with_the_fix(hub: str, tmp_path: Path) -> None:
    code, out = finished(fetch(hub, tmp_path, "hf://Org/Gated"))
    assert code == 1
    assert "Org/Gated is gated" in out and "HF_TOKEN" in out and "Secret" in out
    secret = 'Secret "hf-token" (key token, variable HF_TOKEN)'
    code, out = finished(fetch(hub, tmp_path, "hf://Org/Gated", f"--credentials={secret}", token="hf_wrong"))
    assert code == 1
    assert 'refused the token from Secret "hf-token"' in out
    assert not (tmp_path / key_of(hub, "Org/Gated")).exists()
    code, out = finished(fetch(hub, tmp_path, "hf://Org/Gated", f"--credentials={secret}", token=TOKEN))
    assert code == 0, out


def test_a_model_the_hub_does_not_have_is_named(hub: str, tmp_path: Path) -> None:
    code, out = finished(fetch(hub, tmp_path, "hf://Org/Nothing"))
    assert code == 1
    assert "Org/Nothing: no such model" in out and "hearth.dev/model" in out


def test_an_unreachable_hub_is_tried_again_then_reported(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, out = finished(fetch(dead, tmp_path, "hf://Org/Small", "--attempts=2"))
    assert code == 1
    assert "try 2 in 2s" in out and "failed 2 times" in out
    assert time.monotonic() - started >= 2


def test_a_non_hub_model_is_refused(tmp_path: Path) -> None:
    code, out = finished(fetch("http://127.0.0.1:9", tmp_path, "pvc://models/qwen"))
    assert code == 1 and "hub models (hf://ORG/NAME, modelscope://ORG/NAME) only" in out


def test_other_weight_formats_stay_on_the_hub_when_safetensors_are_there(hub: str, tmp_path: Path) -> None:
    before = counts(hub)
    code, out = finished(fetch(hub, tmp_path, "hf://Org/Mixed"))
    assert code == 0, out
    assert "left on the hub: original/consolidated.00.pth, pytorch_model.bin" in out
    entry = tmp_path / key_of(hub, "Org/Mixed")
    assert not (entry / "pytorch_model.bin").exists() and not (entry / "original" / "consolidated.00.pth").exists()
    assert (entry / "original" / "params.json").is_file()
    fetched = [p for p in entry.rglob("*") if p.is_file() and ".hearth" not in p.parts]
    assert counts(hub)["Org/Mixed download"] - before.get("Org/Mixed download", 0) == len(fetched)
    assert Store(tmp_path).check(key_of(hub, "Org/Mixed")).state == "hit"
    assert files_to_fetch(["a.bin", "config.json"]) == ["a.bin", "config.json"]  # no safetensors: all of it


def test_the_simulator_loads_longer_for_a_larger_model(tmp_path: Path) -> None:
    small = generate_model(tmp_path / "small", 8, shards=2)
    large = generate_model(tmp_path / "large", 32, shards=2)
    rate = 64.0  # MiB/s: 8 MiB takes ~0.125 s, 32 MiB ~0.5 s
    assert load(large, rate).seconds > 2 * load(small, rate).seconds


def test_eviction_takes_the_least_recently_used_models_no_pod_uses() -> None:
    gib = 2**30
    entries = [
        Entry("huggingface/a/old", 30 * gib, last_used=100, in_use=True),
        Entry("huggingface/a/older", 10 * gib, last_used=50),
        Entry("huggingface/a/new", 40 * gib, last_used=300),
        Entry("huggingface/a/mid", 15 * gib, last_used=200),
    ]
    assert evictions(entries, 100 * gib, 90, 80) == ["huggingface/a/older", "huggingface/a/mid"]
    assert evictions(entries, 200 * gib, 90, 80) == []  # under the high watermark: nothing
    only_used = [Entry("huggingface/a/x", 99 * gib, 1, in_use=True)]
    assert evictions(only_used, 100 * gib, 90, 80) == []  # in use: kept, even over the watermark
