"""The Helm chart (charts/hearth) against its one source, manifests/: its templates are what
charts/generate.py writes, `helm lint` passes, `helm template` with default values installs exactly the
objects `kubectl kustomize manifests/` does, and every value changes what it names. helm is built from
its Go module (helm.sh/helm/v3 v3.22.0, tests/helm). Applied with a server-side dry run on the local
cluster: tests/e2e/test_chart_live.py."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.gotools import go_tool
from tests.support import ROOT

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

CHART = ROOT / "charts" / "hearth"


def helm(*args: str) -> str:
    binary = go_tool(ROOT / "tests" / "helm", "helm.sh/helm/v3/cmd/helm")
    done = subprocess.run([str(binary), *args], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def rendered(*values: str, namespace: str = "hearth-system") -> list[dict[str, Any]]:
    text = helm("template", "hearth", str(CHART), "-n", namespace, "--include-crds", *values)
    return [d for d in yaml.safe_load_all(text) if d]


def kustomized() -> list[dict[str, Any]]:
    text = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests")], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(text) if d and d["kind"] != "Namespace"]  # Helm's to create


def by_identity(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}


def test_the_templates_are_what_the_generator_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("chart_generate", ROOT / "charts" / "generate.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    written = generator.generate(tmp_path)
    for path in written:
        shipped = CHART / path.relative_to(tmp_path)
        assert shipped.read_text() == path.read_text(), f"{shipped} is stale: run python charts/generate.py"
    shipped_files = {p.relative_to(CHART) for p in CHART.rglob("*.yaml") if p.parent.name in ("templates", "crds")}
    assert shipped_files == {p.relative_to(tmp_path) for p in written}


def test_helm_lint_passes_with_default_and_other_values() -> None:
    assert "0 chart(s) failed" in helm("lint", str(CHART))
    assert "0 chart(s) failed" in helm("lint", str(CHART), "--set", "apiKeys.enabled=false,gateway.replicas=3")


def test_the_chart_installs_what_the_manifests_install() -> None:
    chart, manifests = by_identity(rendered()), by_identity(kustomized())
    assert sorted(chart) == sorted(manifests)
    for identity, obj in manifests.items():
        assert chart[identity] == obj, identity


def test_every_value_changes_what_it_names() -> None:
    values = [
        "--set",
        "image.repository=registry.example.com/hearth,image.tag=1.2.3,sidecarImage=registry.example.com/sidecar:9",
        "--set",
        "gateway.replicas=3,apiKeys.enabled=false,gateway.resources.limits.memory=2Gi",
        "--set",
        "gateway.extraArgs={--max-held=20000},networkPolicies.enabled=false,disruptionBudgets.enabled=false",
        "--set",
        "dashboard.enabled=false,nodeAgent.hostPath=/mnt/nvme/models",
    ]
    objects = rendered(*values, namespace="ai-platform")
    found = by_identity(objects)
    kinds = {kind for kind, _, _ in found}
    assert not {"NetworkPolicy", "PodDisruptionBudget"} & kinds
    (images,) = [o for o in objects if o["kind"] == "ConfigMap"]  # no dashboard: the fetcher's images alone
    assert images["metadata"]["name"] == "hearth-fetcher-images"
    assert images["data"] == {"images": "registry.example.com/sidecar:9"}  # what the node cache policy admits
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    containers = {name: d["spec"]["template"]["spec"]["containers"][0] for name, d in deployments.items()}
    assert {c["image"] for c in containers.values()} == {"registry.example.com/hearth:1.2.3"}
    assert containers["hearth-webhook"]["env"] == [
        {"name": "HEARTH_SIDECAR_IMAGE", "value": "registry.example.com/sidecar:9"}
    ]
    assert deployments["hearth-gateway"]["spec"]["replicas"] == 3
    assert containers["hearth-gateway"]["resources"]["limits"] == {"memory": "2Gi"}
    args = containers["hearth-gateway"]["args"]
    assert "--trusted-network" in args and "--max-held=20000" in args
    assert "--internal-caller=ai-platform/hearth-scaler" in args
    assert "--lease-namespace=ai-platform" in containers["hearth-scaler"]["args"]
    assert {"name": "HEARTH_SIDECAR_IMAGE", "value": "registry.example.com/sidecar:9"} in containers["hearth-scaler"][
        "env"
    ]
    (agent,) = [o for o in objects if o["kind"] == "DaemonSet"]
    assert agent["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] == "/mnt/nvme/models"
    assert "--host-path=/mnt/nvme/models" in agent["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [o for o in rendered("--set", "nodeAgent.enabled=false") if o["kind"] == "DaemonSet"]
    policies = [o for o in rendered("--set", "networkPolicies.prometheusNamespace=obs") if o["kind"] == "NetworkPolicy"]
    prometheus = [
        peer["namespaceSelector"]["matchLabels"]
        for o in policies
        for rule in o["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if peer.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "prometheus"}
    ]
    assert prometheus == [{"kubernetes.io/metadata.name": "obs"}] * 3  # the front doors, scalers and node agents
    namespaced = [
        o for o in objects if o["kind"] not in ("ClusterRole", "ClusterRoleBinding") and "namespace" in o["metadata"]
    ]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"ai-platform"}
    webhooks = [w for o in objects if o["kind"].endswith("WebhookConfiguration") for w in o["webhooks"]]
    assert {w["clientConfig"]["service"]["namespace"] for w in webhooks} == {"ai-platform"}
    default = {o["metadata"]["name"]: o for o in rendered() if o["kind"] == "Deployment"}
    image = default["hearth-webhook"]["spec"]["template"]["spec"]["containers"][0]
    assert image["env"] == [{"name": "HEARTH_SIDECAR_IMAGE", "value": "ghcr.io/hearth-project/hearth:0.1.0"}]
