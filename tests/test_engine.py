"""The real engine's pieces that need no cluster: the GGUF models the dev hub generates, the check that the
engine compiled here can run on the image's base, the hub serving llama.cpp repositories, and what the
webhook says about llama-cpp-python's defaults (tests/e2e/test_engine.py runs the engine itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from fastapi.testclient import TestClient

from devcluster.engine import check_runtimes
from devcluster.gguf_model import FILE, NEVER_SAMPLED, WORDS_TEXT, generate_gguf, shape_for, vocabulary
from devcluster.hub import serve_folder
from devcluster.image import ImageError
from policies import reported_name, validate_deployment


def test_a_generated_model_is_a_llama_of_the_size_asked_that_only_says_words(tmp_path: Path) -> None:
    path = generate_gguf(tmp_path / "m", 4)
    assert path.name == FILE and 0.75 < path.stat().st_size / (4 * 2**20) < 1.25  # widths go by heads of 64
    reader = gguf.GGUFReader(path)
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == "llama"
    shape = shape_for(4)
    names = {t.name for t in reader.tensors}
    assert {f"blk.{shape.layers - 1}.ffn_down.weight", "token_embd.weight", "output.weight"} <= names
    output = next(t for t in reader.tensors if t.name == "output.weight").data
    tokens, _, types = vocabulary()
    assert output.shape == (len(tokens), shape.embedding)
    # The rows of the special and byte tokens point against the constant first component of every
    # embedding: only words are ever sampled.
    assert np.all(output[:NEVER_SAMPLED, 0] == -5.0) and np.all(np.abs(output[NEVER_SAMPLED:, 0]) < 1)
    assert tokens[NEVER_SAMPLED:] == ["\u2581"] + [f"\u2581{w}" for w in WORDS_TEXT.split()]
    assert types[:NEVER_SAMPLED] == [2, 3, 3] + [6] * 256
    again = generate_gguf(tmp_path / "again", 4)
    assert again.read_bytes() == path.read_bytes()  # the same arguments, the same bytes


def _library(tmp_path: Path, *versions: bytes) -> Path:
    library = tmp_path / "libllama.so"
    library.write_bytes(b"\x7fELF" + b"".join(v + b"\x00" for v in versions))
    return library


def test_libraries_newer_than_the_bases_runtimes_are_refused_with_the_reason(tmp_path: Path) -> None:
    check_runtimes([_library(tmp_path, b"GLIBC_2.2.5", b"GLIBC_2.34", b"GLIBCXX_3.4.29")])  # bookworm's: fine
    with pytest.raises(ImageError, match=r"glibc 2\.38.*Debian bookworm \(glibc 2\.36"):
        check_runtimes([_library(tmp_path, b"GLIBC_2.38", b"GLIBCXX_3.4.29")])
    with pytest.raises(ImageError, match=r"libstdc\+\+ 3\.4\.32"):
        check_runtimes([_library(tmp_path, b"GLIBC_2.34", b"GLIBCXX_3.4.32")])


def test_the_hub_serves_a_llamacpp_repository_with_its_gguf_as_an_lfs_file(tmp_path: Path) -> None:
    app = serve_folder(tmp_path, [], [], ["hearth-dev/tiny-gguf=1"])
    with TestClient(app) as client:
        info = client.get("/api/models/hearth-dev/tiny-gguf?blobs=true").json()
        (sibling,) = info["siblings"]
        assert sibling["rfilename"] == "model.gguf" and "sha256" in sibling["lfs"]
        assert info["tags"] == ["gguf", "llama"] and info["library_name"] == "llama.cpp"
        body = client.get("/hearth-dev/tiny-gguf/resolve/main/model.gguf").content
    assert body == (tmp_path / "hearth-dev" / "tiny-gguf" / FILE).read_bytes()


def keep(args: list[str], probe: str = "/openapi.json") -> dict[str, Any]:
    container = {
        "name": "server",
        "image": "ghcr.io/abetlen/llama-cpp-python:v0.3.36",
        "command": ["python3", "-m", "llama_cpp.server"],
        "args": ["--model", "/models/m.gguf", "--model_alias", "llama", "--port", "8080", *args],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": probe, "port": 8080}},
    }
    template = {
        "metadata": {"labels": {"app": "llama", "hearth.dev/enabled": "true"}},
        "spec": {"containers": [container]},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llama", "namespace": "edge", "labels": {"hearth.dev/enabled": "true"}},
        "spec": {"selector": {"matchLabels": {"app": "llama"}}, "template": template},
    }


@pytest.mark.parametrize("flag", [["--interrupt_requests", "false"], ["--interrupt-requests=False"]])
def test_llama_cpp_python_with_the_flags_it_needs_behind_a_proxy_gets_no_warning(flag: list[str]) -> None:
    assert not [w for w in validate_deployment(keep(flag)).warnings if "llama-cpp-python" in w]


def test_llama_cpp_python_defaults_that_break_streams_behind_the_sidecar_are_said_with_the_fix() -> None:
    warnings = [w for w in validate_deployment(keep([], probe="/v1/models")).warnings if "llama-cpp-python" in w]
    assert len(warnings) == 2
    assert "add --interrupt_requests=false" in warnings[0]
    assert "probe /openapi.json" in warnings[1]
    explicit = keep(["--interrupt_requests", "true"])
    assert [w for w in validate_deployment(explicit).warnings if "--interrupt_requests=false" in w]


def test_llama_cpp_pythons_model_alias_is_the_name_it_serves() -> None:
    assert reported_name(keep([])["spec"]["template"]["spec"]["containers"][0]) == "llama"


def test_the_containerfile_for_users_builds_what_the_dev_cluster_builds() -> None:
    from devcluster.engine import CMAKE_ARGS, ENTRYPOINT, EXTRAS, LLAMA_CPP_PYTHON, SITE
    from tests.support import ROOT

    text = (ROOT / "Containerfile.llamacpp").read_text()
    assert f'CMAKE_ARGS="{" ".join(CMAKE_ARGS)}"' in text
    assert f'"llama-cpp-python[server]=={LLAMA_CPP_PYTHON}"' in text and all(f'"{e}"' in text for e in EXTRAS)
    assert f"PYTHONPATH=/{SITE} " in text and f"ENTRYPOINT {list(ENTRYPOINT)}".replace("'", '"') in text


def test_the_sidecar_follows_the_runtimes_health_path_in_render_mode() -> None:
    """Found by running llama.cpp: its server has no /health, and the sidecar asked /health whatever the
    runtime's probes said, so a rendered pod never became Ready."""
    import yaml

    from devcluster.cluster import ENGINE_RUNTIME
    from devcluster.models import engine_model
    from policies import RenderSettings, render_for_pod, runtime_from_object
    from tests.support import apiserver_pod

    runtimes = [runtime_from_object(yaml.safe_load(ENGINE_RUNTIME.read_text()))]
    deployment = engine_model("edge", "llama", delay="5m")
    assert not validate_deployment(deployment, runtimes).warnings
    pod = render_for_pod(apiserver_pod(deployment), runtimes, RenderSettings())
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert "--health-path=/openapi.json" in containers["hearth-gateway"]["args"]
    assert containers["model"]["readinessProbe"]["httpGet"]["path"] == "/openapi.json"
    assert "--interrupt_requests=false" in containers["model"]["args"]


def test_the_engine_demo_model_is_served_by_the_engine_runtime_without_a_warning() -> None:
    import dataclasses

    import yaml

    from devcluster.cluster import DEV_RUNTIMES, ENGINE_RUNTIME
    from devcluster.demo import ENGINE_MANIFEST
    from policies import runtime_from_object, select_runtime

    text = DEV_RUNTIMES.read_text() + "---\n" + ENGINE_RUNTIME.read_text()
    runtimes = [runtime_from_object(d) for d in yaml.safe_load_all(text) if d]
    verdict = validate_deployment(yaml.safe_load(ENGINE_MANIFEST.read_text()), runtimes)
    assert [w for w in verdict.warnings if "scale-down-delay is 15s" not in w] == [] and verdict.pod is not None
    assert select_runtime(verdict.pod, runtimes).name == "llamacpp-nvidia"
    unpinned = dataclasses.replace(verdict.pod, runtime=None, vendors=("nvidia",))
    assert select_runtime(unpinned, runtimes).name == "sim-nvidia"  # below the simulator: only a pin chooses it
