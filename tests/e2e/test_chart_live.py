"""The Helm chart's objects, as `helm template` renders them with default and other values, accepted by the
real apiserver (server-side dry runs: schemas, CEL rules, admission, the installed objects as they are)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from devcluster.cluster import Cluster
from tests.support import ROOT
from tests.test_chart import CHART, helm

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("namespace", "values"),
    [
        ("hearth-system", []),
        ("ai-platform", ["--set", "apiKeys.enabled=false,gateway.replicas=3,networkPolicies.enabled=false"]),
    ],
)
def test_every_rendered_set_is_accepted_by_the_apiserver(cluster: Cluster, namespace: str, values: list[str]) -> None:
    cluster.kubectl("create", "namespace", namespace, check=False)
    try:
        text = helm("template", "hearth", str(CHART), "-n", namespace, "--include-crds", *values)
        applied = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
        assert applied.returncode == 0, applied.stderr
        objects = [d for d in yaml.safe_load_all(text) if d]
        assert len(objects) > 30 and applied.stdout.count("(server dry run)") == len(objects), applied.stdout
    finally:
        if namespace != "hearth-system":
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# The CRDs the overlays' objects need, from the operators' own Go modules (the module proxy serves them).
OPERATOR_CRDS = {
    ("github.com/cert-manager/cert-manager", "v1.21.2"): (
        "deploy/crds/cert-manager.io_certificates.yaml",
        "deploy/crds/cert-manager.io_issuers.yaml",
    ),
    ("github.com/argoproj/argo-cd/v3", "v3.2.12"): ("manifests/crds/application-crd.yaml",),
    ("github.com/prometheus-operator/prometheus-operator", "v0.85.0"): (
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    ),
}


def module_dir(module: str, version: str) -> Path:
    found = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        cwd=ROOT / "tests" / "helm",  # any module folder: go mod download wants one
    )
    return Path(json.loads(found.stdout)["Dir"])


@pytest.mark.parametrize("overlay", ["cert-manager", "prometheus-operator"])
def test_the_kustomize_overlays_are_accepted_with_their_operators_crds(cluster: Cluster, overlay: str) -> None:
    crds = [module_dir(*key) / path for key, paths in OPERATOR_CRDS.items() for path in paths]
    cluster.kubectl("apply", "--server-side", *(f"-f={crd}" for crd in crds))
    for crd in crds:
        name = yaml.safe_load(crd.read_text())["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    applied = cluster.kubectl(
        "apply", "--dry-run=server", "-k", str(ROOT / "examples" / "kustomize" / overlay), check=False
    )
    assert applied.returncode == 0, applied.stderr
    kinds = {"cert-manager": ("certificate.cert-manager.io/hearth-webhook", "issuer.cert-manager.io/hearth-ca")}.get(
        overlay, ("servicemonitor.monitoring.coreos.com/hearth-gateway", "prometheusrule.monitoring.coreos.com/hearth")
    )
    for kind in kinds:
        assert f"{kind} created (server dry run)" in applied.stdout, applied.stdout


def test_the_argo_cd_applications_of_examples_gitops_are_accepted(cluster: Cluster) -> None:
    crd = module_dir("github.com/argoproj/argo-cd/v3", "v3.2.12") / "manifests/crds/application-crd.yaml"
    cluster.kubectl("apply", "--server-side", f"-f={crd}")
    cluster.kubectl("wait", "--for=condition=Established", "crd/applications.argoproj.io", "--timeout=60s")
    cluster.kubectl("create", "namespace", "argocd", check=False)
    gitops = ROOT / "examples" / "gitops"
    applied = cluster.kubectl(
        "apply", "--dry-run=server", f"-f={gitops / 'root.yaml'}", f"-f={gitops / 'apps'}", check=False
    )
    assert applied.returncode == 0, applied.stderr
    for name in ("hearth-root", "hearth", "hearth-runtimes", "models"):
        assert f"application.argoproj.io/{name} created (server dry run)" in applied.stdout, applied.stdout
