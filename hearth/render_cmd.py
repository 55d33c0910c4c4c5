"""`hearth render`: print the Pod that the webhook would create for a Deployment (like kube-inject); for an
LLMService, the Deployment it compiles into and then that Pod."""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml

from policies import (
    LLMSERVICE_KIND,
    ContractError,
    RenderSettings,
    compile_deployment,
    render_for_pod,
    validate_deployment,
    validate_llmservice,
)
from webhook import load_runtimes


def pod_from_deployment(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The Pod that the ReplicaSet controller would post for this Deployment (before admission); it shares
    nothing with `deployment`, which stays as it was whatever is done to the pod."""
    meta = deployment.get("metadata") or {}
    template = copy.deepcopy((deployment.get("spec") or {}).get("template") or {})
    template_meta = dict(template.get("metadata") or {})
    name = str(meta.get("name", "model"))
    template_hash = "0000000000"
    labels = {**(template_meta.get("labels") or {}), "pod-template-hash": template_hash}
    pod_meta: dict[str, Any] = {
        **template_meta,
        "generateName": f"{name}-{template_hash}-",
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{name}-{template_hash}",
                "uid": "00000000-0000-0000-0000-000000000000",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if meta.get("namespace"):
        pod_meta["namespace"] = meta["namespace"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": dict(template.get("spec") or {})}


def render_documents(
    deployment_file: Path, runtimes_path: Path, settings: RenderSettings
) -> tuple[list[dict[str, Any]], list[str]]:
    runtimes = load_runtimes(runtimes_path)
    documents: list[dict[str, Any]] = []
    warnings: list[str] = []
    for doc in yaml.safe_load_all(deployment_file.read_text()):
        deployment = doc
        if isinstance(doc, Mapping) and doc.get("kind") == LLMSERVICE_KIND:
            warnings.extend(validate_llmservice(doc, runtimes).warnings)
            deployment = compile_deployment(doc)
            documents.append(deployment)  # the preview shows what the LLMService becomes, then its pod
        elif not isinstance(doc, Mapping) or doc.get("kind") != "Deployment":
            continue
        verdict = validate_deployment(deployment, runtimes)
        warnings.extend(verdict.warnings)
        documents.append(render_for_pod(pod_from_deployment(deployment), runtimes, settings))
    return documents, warnings


def run(deployment_file: Path, runtimes_path: Path, settings: RenderSettings, out: TextIO = sys.stdout) -> int:
    try:
        pods, warnings = render_documents(deployment_file, runtimes_path, settings)
    except ContractError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not pods:
        print(f"error: {deployment_file} holds no Deployment or LLMService", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    yaml.safe_dump_all(pods, out, sort_keys=False)
    return 0
