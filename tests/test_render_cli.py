"""`hearth render`: the preview users run in CI and GitOps repos, with the webhook's own messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT, RUNTIMES

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)


def render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hearth", "render", *args], capture_output=True, text=True, check=False
    )


def test_render_prints_the_pod() -> None:
    result = render("-f", str(ROOT / "examples" / "qwen3-8b.yaml"), "--runtimes", str(RUNTIMES))
    assert result.returncode == 0, result.stderr
    pod = yaml.safe_load(result.stdout)
    assert pod["kind"] == "Pod" and pod["metadata"]["labels"]["hearth.dev/runtime"] == "vllm-nvidia"
    # The announcement's modelscope:// model comes from the node cache: fetched from modelscope.cn once per node.
    (fetcher,) = pod["spec"]["initContainers"]
    assert fetcher["name"] == "hearth-fetch"
    assert "--model=modelscope://Qwen/Qwen3-8B-Instruct" in fetcher["args"]
    assert "--endpoint=https://modelscope.cn" in fetcher["args"]
    model = pod["spec"]["containers"][0]
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in model["env"]
    assert "/var/lib/hearth/models/modelscope/modelscope.cn-" in " ".join(model["args"])


def test_render_fails_with_the_webhook_message(tmp_path: Path) -> None:
    bad = yaml.safe_load((ROOT / "examples" / "qwen3-8b.yaml").read_text())
    bad["metadata"]["annotations"]["hearth.dev/target"] = "ten"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = render("-f", str(tmp_path / "bad.yaml"), "--runtimes", str(RUNTIMES))
    assert result.returncode == 1 and result.stdout == ""
    assert 'metadata.annotations["hearth.dev/target"] is "ten": must be a whole number' in result.stderr


def test_render_warns_about_replicas(tmp_path: Path) -> None:
    risky = yaml.safe_load((ROOT / "examples" / "qwen3-8b.yaml").read_text())
    risky["spec"]["replicas"] = 2
    (tmp_path / "risky.yaml").write_text(yaml.safe_dump(risky))
    result = render("-f", str(tmp_path / "risky.yaml"), "--runtimes", str(RUNTIMES))
    assert result.returncode == 0 and "Warning: spec.replicas is set" in result.stderr


def test_render_reports_a_missing_file() -> None:
    result = render("-f", "/nonexistent.yaml", "--runtimes", str(RUNTIMES))
    assert result.returncode == 2 and "No such file" in result.stderr


def test_render_previews_the_deployment_an_llmservice_becomes_and_its_pod(tmp_path: Path) -> None:
    sample = ROOT / "examples" / "llmservice" / "qwen3-8b.yaml"
    result = render("-f", str(sample), "--runtimes", str(RUNTIMES))
    assert result.returncode == 0, result.stderr
    deployment, pod = yaml.safe_load_all(result.stdout)
    assert deployment["kind"] == "Deployment" and "replicas" not in deployment["spec"]
    assert deployment["metadata"]["annotations"]["hearth.dev/max-replicas"] == "3"
    assert pod["kind"] == "Pod" and pod["metadata"]["labels"]["hearth.dev/runtime"] == "vllm-nvidia"
    bad = yaml.safe_load(sample.read_text())
    bad["spec"]["scaling"]["target"] = 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    refused = render("-f", str(tmp_path / "bad.yaml"), "--runtimes", str(RUNTIMES))
    assert refused.returncode == 1 and refused.stdout == ""
    assert 'spec.scaling.target is "0": Input should be greater than or equal to 1' in refused.stderr
