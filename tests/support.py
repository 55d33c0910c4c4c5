"""Helpers shared by tests: loading the golden inputs and shaping AdmissionReviews as kube-apiserver does."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from devcluster.gotools import go_tool
from hearth.render_cmd import pod_from_deployment
from policies import InferenceRuntime, runtime_from_object

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
RUNTIMES = ROOT / "manifests" / "runtimes"


def go_json(tool: str, payload: Any) -> Any:
    """Run one of the Go test tools in tests/<tool>/ (built once, cached: bench.harness.go_tool) with
    `payload` as JSON on its stdin, and return the JSON it prints."""
    answer = subprocess.run(
        [str(go_tool(ROOT / "tests" / tool))],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(answer.stdout)


def load_case(path: Path) -> tuple[dict[str, Any], list[InferenceRuntime]]:
    deployment: dict[str, Any] | None = None
    runtimes: list[InferenceRuntime] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc.get("kind") == "Deployment":
            deployment = doc
        else:
            runtimes.append(runtime_from_object(doc))
    if deployment is None:
        raise ValueError(f"{path} has no Deployment")
    return deployment, runtimes or sample_runtimes()  # a case without runtimes meets the shipped samples


def sample_runtimes() -> list[InferenceRuntime]:
    return [runtime_from_object(yaml.safe_load(p.read_text())) for p in sorted(RUNTIMES.glob("*.yaml"))]


def apiserver_pod(deployment: dict[str, Any]) -> dict[str, Any]:
    """The pod the ReplicaSet controller posts, with the fields the apiserver has filled in by admission."""
    pod = pod_from_deployment(deployment)
    meta = pod["metadata"]
    meta.setdefault("namespace", "ai")
    meta["managedFields"] = [
        {
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "manager": "kube-controller-manager",
            "operation": "Update",
            "time": "2026-11-29T02:00:00Z",
            "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}}}},
        }
    ]
    spec = pod["spec"]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    for container in spec.get("containers", []):
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("imagePullPolicy", "IfNotPresent")
    return pod


def admission_review(
    obj: dict[str, Any] | None,
    *,
    group: str = "",
    version: str = "v1",
    kind: str = "Pod",
    resource: str = "pods",
    operation: str = "CREATE",
    dry_run: bool = False,
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 shaped like kube-apiserver's."""
    namespace = ((obj or old or {}).get("metadata") or {}).get("namespace", "ai")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": ((obj or {}).get("metadata") or {}).get("name", ""),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "5f1f5b7e-0000-4000-8000-000000000001",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            },
            "object": copy.deepcopy(obj),
            "oldObject": copy.deepcopy(old),
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
