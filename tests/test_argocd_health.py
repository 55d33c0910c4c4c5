"""Argo CD's view of Hearth (manifests/argocd/argocd-cm-health.yaml), run in gopher-lua as Argo CD runs
health scripts (tests/argohealth): Hearth's phases for opted-in Deployments, Argo CD's own rules for every
other Deployment (the customization replaces the built-in check for the kind), and InferenceRuntimes.
Against live objects in every phase: tests/e2e/test_argocd_health.py."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support import ROOT, go_json

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

CUSTOMIZATIONS = yaml.safe_load((ROOT / "manifests" / "argocd" / "argocd-cm-health.yaml").read_text())["data"]
DEPLOYMENT = "resource.customizations.health.apps_Deployment"
RUNTIME = "resource.customizations.health.serving.hearth.dev_InferenceRuntime"
LLMSERVICE = "resource.customizations.health.serving.hearth.dev_LLMService"


def health(key: str, *objects: dict[str, Any]) -> list[tuple[str, str]]:
    answer = go_json("argohealth", {"script": CUSTOMIZATIONS[key], "objects": list(objects)})
    return [(h["status"], h["message"]) for h in answer]


def deployment(wanted: int, *, phase: str | None = None, message: str = "", **status: int) -> dict[str, Any]:
    labels = {"hearth.dev/enabled": "true", "hearth.dev/phase": phase} if phase else {"app": "web"}
    conditions = [{"type": "hearth.dev/Serving", "status": "True", "reason": phase, "message": message}]
    counts = {"observedGeneration": 2, "replicas": wanted, "updatedReplicas": wanted, "availableReplicas": wanted}
    return {
        "metadata": {"name": "d", "generation": 2, "labels": labels},
        "spec": {"replicas": wanted},
        "status": {**counts, **status, "conditions": conditions if phase else []},
    }


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("ScaledToZero", "Healthy"),
        ("Ready", "Healthy"),
        ("Activating", "Progressing"),
        ("Scaling", "Progressing"),
        ("Degraded", "Degraded"),
    ],
)
def test_an_opted_in_deployment_shows_hearths_phase(phase: str, expected: str) -> None:
    ((status, message),) = health(DEPLOYMENT, deployment(0 if phase == "ScaledToZero" else 1, phase=phase, message="m"))
    assert status == expected and message == f"Hearth: {phase} (m)"


def test_a_degraded_model_says_why_and_a_rollout_still_shows() -> None:
    why = "desired 1; ready 0; failed: pod refused: no runtime no-such-runtime"
    assert health(DEPLOYMENT, deployment(1, phase="Degraded", message=why))[0] == (
        "Degraded",
        f"Hearth: Degraded ({why})",
    )
    rolling = deployment(2, phase="Ready", updatedReplicas=1)
    status, message = health(DEPLOYMENT, rolling)[0]
    assert status == "Progressing" and "1 out of 2 new replicas" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "Healthy"),
        ({"observedGeneration": 1}, "Progressing"),
        ({"updatedReplicas": 1}, "Progressing"),
        ({"replicas": 3}, "Progressing"),
        ({"availableReplicas": 1}, "Progressing"),
    ],
)
def test_every_other_deployment_keeps_argo_cds_rules(changes: dict[str, int], expected: str) -> None:
    plain = deployment(2)
    plain["status"].update(changes)
    assert health(DEPLOYMENT, plain)[0][0] == expected


def test_paused_and_stuck_deployments_are_suspended_and_degraded() -> None:
    paused = deployment(1)
    paused["spec"]["paused"] = True
    stuck = deployment(1, updatedReplicas=0)
    stuck["status"]["conditions"] = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]
    assert [s for s, _ in health(DEPLOYMENT, paused, stuck)] == ["Suspended", "Degraded"]


def test_a_stored_runtime_is_healthy() -> None:
    runtime = {"spec": {"vendor": "nvidia", "priority": 100, "accelerator": {"resource": "nvidia.com/gpu"}}}
    assert health(RUNTIME, runtime) == [("Healthy", "nvidia on nvidia.com/gpu, priority 100")]
    assert health(RUNTIME, {"spec": {}})[0][0] == "Degraded"


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Pending", "Progressing"),
        ("ScaledToZero", "Healthy"),
        ("Activating", "Progressing"),
        ("Ready", "Healthy"),
        ("Scaling", "Progressing"),
        ("Degraded", "Degraded"),
        ("Conflict", "Degraded"),
        ("Invalid", "Degraded"),
    ],
)
def test_an_llmservice_shows_its_phase(phase: str, expected: str) -> None:
    service = {"metadata": {"generation": 2}, "status": {"phase": phase, "observedGeneration": 2, "message": "m"}}
    assert health(LLMSERVICE, service) == [(expected, f"Hearth: {phase} (m)")]


def test_an_llmservice_edit_not_yet_compiled_is_progressing() -> None:
    edited = {"metadata": {"generation": 3}, "status": {"phase": "Ready", "observedGeneration": 2}}
    assert health(LLMSERVICE, edited, {"metadata": {"generation": 1}})[0][0] == "Progressing"
    assert health(LLMSERVICE, {"metadata": {"generation": 1}})[0][0] == "Progressing"
