"""What `kubectl apply -k manifests/` installs, read as the files say: every object labelled, each
component's disruption budget and spreading, probes on every component."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support import ROOT

MANIFESTS = ROOT / "manifests"
COMPONENTS = ("hearth-webhook", "hearth-gateway", "hearth-scaler")


def installed() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = [MANIFESTS / name for name in kustomization["resources"]]
    return [d for path in files for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_installed_object_carries_the_recommended_labels() -> None:
    objects = installed() + list(yaml.safe_load_all((MANIFESTS / "tenant" / "model-pods.yaml").read_text()))
    unlabelled = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if not {"app.kubernetes.io/name", "app.kubernetes.io/part-of"} <= set(o["metadata"].get("labels") or {})
        or o["metadata"]["labels"]["app.kubernetes.io/part-of"] != "hearth"
    ]
    assert len(objects) > 30 and unlabelled == []


def test_each_component_survives_a_drain_and_spreads_over_nodes() -> None:
    objects = installed()
    budgets = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    deployments = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Deployment"}
    for name in COMPONENTS:
        selector = deployments[name]["selector"]["matchLabels"]
        assert budgets[name] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
        assert deployments[name]["replicas"] >= 2  # a budget of one unavailable leaves one serving
        (spread,) = deployments[name]["template"]["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["labelSelector"]["matchLabels"] == selector
        for container in deployments[name]["template"]["spec"]["containers"]:
            assert {"readinessProbe", "livenessProbe"} <= set(container), (name, container["name"])


@pytest.mark.process  # real processes (tests/conftest.py: the tiers)
def test_the_cert_manager_overlay_issues_the_webhooks_secret_and_injects_its_ca() -> None:
    import subprocess

    overlay = ROOT / "examples" / "kustomize" / "cert-manager"
    text = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True).stdout
    objects = [d for d in yaml.safe_load_all(text) if d]
    certificates = {d["metadata"]["name"]: d["spec"] for d in objects if d["kind"] == "Certificate"}
    mounted = next(
        v["secret"]["secretName"]
        for d in objects
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "hearth-webhook"
        for v in d["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    )
    assert certificates["hearth-webhook"]["secretName"] == mounted == "hearth-webhook-tls"
    assert "hearth-webhook.hearth-system.svc" in certificates["hearth-webhook"]["dnsNames"]
    for config in (d for d in objects if d["kind"].endswith("WebhookConfiguration")):
        assert config["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "hearth-system/hearth-webhook"}
        assert all("caBundle" not in hook["clientConfig"] for hook in config["webhooks"])


def test_every_shipped_yaml_file_parses() -> None:
    files = [
        *(ROOT / "manifests").rglob("*.yaml"),
        *(ROOT / "examples").rglob("*.yaml"),
        *(ROOT / "charts").glob("*/*.yaml"),
    ]
    assert len(files) > 30
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), path


def test_the_fetcher_image_the_policy_admits_is_the_one_the_webhook_renders() -> None:
    """The node cache policy admits hearth-fetch only from the images of the ConfigMap hearth-fetcher-images;
    the webhook renders it (and the scaler's prewarm Jobs) from HEARTH_SIDECAR_IMAGE: they must agree."""
    objects = installed()
    (images,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "hearth-fetcher-images"]
    admitted = {image.strip() for image in images["data"]["images"].split(",")}
    rendered = {
        env["value"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
        for env in c.get("env") or []
        if env["name"] == "HEARTH_SIDECAR_IMAGE"
    }
    assert len(rendered) == 1 and rendered <= admitted


def test_no_admission_policy_can_refuse_every_pod_while_its_param_is_unresolved() -> None:
    """A policy's param that cannot be resolved fails the policy, and a param of a custom resource is not
    resolved while the apiserver starts: the node cache policy once refused every pod of the cluster then.
    Params are core objects only, and a policy with one applies only to Hearth's own pods and callers."""
    policies = [o for o in installed() if o["kind"] == "ValidatingAdmissionPolicy"]
    with_params = [p for p in policies if "paramKind" in p["spec"]]
    assert with_params, "the fetcher's image list is a param"
    for policy in with_params:
        assert policy["spec"]["paramKind"]["apiVersion"] == "v1", policy["metadata"]["name"]
        assert policy["spec"].get("matchConditions"), policy["metadata"]["name"]
