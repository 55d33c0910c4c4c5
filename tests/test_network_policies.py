"""The shipped NetworkPolicies, decided by an independent engine: cyclonus's matcher (the one Kubernetes'
sig-network computes NetworkPolicy truth tables with), driven by tests/policycheck. The local cluster's
CNI bridge enforces no policy, so the policies' meaning is checked here, connection by connection; the
apiserver's acceptance of them is checked by every install (`kubectl apply -k manifests/`)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support import ROOT, go_json

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

SIDECAR = (8090, "hearth-http")  # the rendered sidecar's port and its name (policies.render)
RUNTIME = (8000, "")


def peer(namespace: str | None, ip: str, **labels: str) -> dict[str, Any]:
    if namespace is None:  # outside the cluster: the apiserver on most clusters, a client
        return {"IP": ip}
    internal = {"Namespace": namespace, "NamespaceLabels": {"kubernetes.io/metadata.name": namespace}}
    return {"IP": ip, "Internal": {**internal, "PodLabels": labels}}


DOOR = peer("hearth-system", "10.1.0.2", **{"app.kubernetes.io/name": "hearth-gateway"})
SCALER = peer("hearth-system", "10.1.0.3", **{"app.kubernetes.io/name": "hearth-scaler"})
WEBHOOK = peer("hearth-system", "10.1.0.4", **{"app.kubernetes.io/name": "hearth-webhook"})
MODEL = peer("team-a", "10.2.0.2", app="qwen", **{"hearth.dev/enabled": "true"})
UNGUARDED = peer("team-b", "10.3.0.2", app="llama", **{"hearth.dev/enabled": "true"})  # no tenant policy
STRANGER = peer("team-b", "10.3.0.3", app="client")
INSIDER = peer("hearth-system", "10.1.0.9", app="debug")  # another pod in Hearth's namespace, no policy of its own
PROMETHEUS = peer("monitoring", "10.4.0.2", **{"app.kubernetes.io/name": "prometheus"})
IMPOSTOR = peer("team-b", "10.3.0.4", **{"app.kubernetes.io/name": "prometheus"})  # a tenant's label
CLIENT = peer(None, "203.0.113.7")
APISERVER = peer(None, "192.0.2.10")

# (name, source, destination, (port, port name), allowed?)
CONNECTIONS = [
    ("a front door calls a model's sidecar", DOOR, MODEL, SIDECAR, True),
    ("the scaler reads a model's sidecar", SCALER, MODEL, SIDECAR, True),
    ("a stranger calls a model's sidecar", STRANGER, MODEL, SIDECAR, False),
    ("a stranger calls a model's runtime", STRANGER, MODEL, RUNTIME, False),
    ("another pod of Hearth's namespace calls a model's sidecar", INSIDER, MODEL, SIDECAR, False),
    ("a front door calls a model's runtime, past its sidecar", DOOR, MODEL, RUNTIME, False),
    ("the scaler calls a model's runtime", SCALER, MODEL, RUNTIME, False),
    ("a stranger calls a model where no tenant policy is applied", STRANGER, UNGUARDED, SIDECAR, True),
    ("a client calls a front door", CLIENT, DOOR, (8080, "http"), True),
    ("a stranger pod calls a front door", STRANGER, DOOR, (8080, "http"), True),
    ("Prometheus scrapes a front door's /metrics port", PROMETHEUS, DOOR, (9090, "metrics"), True),
    ("a stranger pod reads a front door's /metrics port", STRANGER, DOOR, (9090, "metrics"), False),
    ("a client reads a front door's /metrics port", CLIENT, DOOR, (9090, "metrics"), False),
    ("a front door pushes to the scaler", DOOR, SCALER, (8081, "http"), True),
    ("the scaler reads a front door's /demand", SCALER, DOOR, (8080, "http"), True),
    ("a stranger pushes to the scaler", STRANGER, SCALER, (8081, "http"), False),
    ("Prometheus scrapes the scaler", PROMETHEUS, SCALER, (8081, "http"), True),
    ("a tenant's pod labelled prometheus reaches the scaler", IMPOSTOR, SCALER, (8081, "http"), False),
    ("the apiserver calls the webhook", APISERVER, WEBHOOK, (8443, "https"), True),
    ("the webhook reaches the apiserver", WEBHOOK, APISERVER, (6443, ""), True),
    ("the webhook reaches a model's sidecar", WEBHOOK, MODEL, SIDECAR, False),
    ("the webhook reaches a front door", WEBHOOK, DOOR, (8080, "http"), False),
    ("a front door reaches the apiserver", DOOR, APISERVER, (443, ""), True),
    ("a front door reaches a stranger pod", DOOR, STRANGER, (8080, ""), False),
    ("the scaler reaches the outside on port 80", SCALER, CLIENT, (80, ""), False),
]


def policies() -> list[dict[str, Any]]:
    """As installed: manifests/network-policies.yaml, and the tenant policy applied in team-a."""
    shipped = list(yaml.safe_load_all((ROOT / "manifests" / "network-policies.yaml").read_text()))
    tenant = list(yaml.safe_load_all((ROOT / "manifests" / "tenant" / "model-pods.yaml").read_text()))
    for policy in tenant:
        policy["metadata"]["namespace"] = "team-a"  # what `kubectl apply -n team-a -f manifests/tenant/` does
    return [p for p in shipped + tenant if p and p.get("kind") == "NetworkPolicy"]


def verdicts() -> dict[str, bool]:
    connections = [
        {
            "name": name,
            "traffic": {
                "Source": source,
                "Destination": destination,
                "ResolvedPort": port,
                "ResolvedPortName": port_name,
                "Protocol": "TCP",
            },
        }
        for name, source, destination, (port, port_name), _ in CONNECTIONS
    ]
    answer = go_json("policycheck", {"policies": policies(), "connections": connections})
    return {v["name"]: v["allowed"] for v in answer}


@pytest.fixture(scope="module")
def decided() -> dict[str, bool]:
    return verdicts()


@pytest.mark.parametrize(("name", "allowed"), [(c[0], c[4]) for c in CONNECTIONS], ids=[c[0] for c in CONNECTIONS])
def test_the_shipped_policies_admit_exactly_hearths_own_paths(
    decided: dict[str, bool], name: str, allowed: bool
) -> None:
    assert decided[name] is allowed


def test_the_tenant_policy_names_no_namespace_and_the_kustomization_ships_the_rest() -> None:
    tenant = yaml.safe_load((ROOT / "manifests" / "tenant" / "model-pods.yaml").read_text())
    assert "namespace" not in tenant["metadata"]  # the one `kubectl apply -n` names is the one it guards
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    assert "network-policies.yaml" in kustomization["resources"]
