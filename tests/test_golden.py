"""Golden files: each tests/golden/X.yaml (a Deployment and the runtimes present) beside X.yaml.rendered,
the Pod the webhook makes of it. Refresh with HEARTH_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from policies import RenderSettings, render_for_pod, validate_deployment
from policies.annotations import RENDERED
from tests.support import GOLDEN, admission_review, apiserver_pod, load_case
from webhook.admission import mutate_pod

CASES = sorted(GOLDEN.glob("*.yaml"))
SETTINGS = RenderSettings()
UPDATE = os.environ.get("HEARTH_UPDATE_GOLDEN") == "1"


def rendered_of(case: Path) -> dict[str, Any]:
    deployment, runtimes = load_case(case)
    validate_deployment(deployment, runtimes)
    pod = apiserver_pod(deployment)
    del pod["metadata"]["managedFields"]  # the webhook drops them before rendering
    return render_for_pod(pod, runtimes, SETTINGS)


def test_the_required_cases_exist() -> None:
    names = {c.stem for c in CASES}
    required = {
        "nvidia-hf",
        "nvidia-modelscope",
        "ascend-910b",
        "ascend-310p",
        "pvc-subpath",
        "pinned-runtime",
        "vendor-fallback",
    }
    assert required <= names


def test_no_golden_file_is_unused() -> None:
    outputs = {p.name.removesuffix(".rendered") for p in GOLDEN.glob("*.rendered")}
    inputs = {p.name for p in CASES}
    assert outputs == inputs, f"stale or missing golden files: {sorted(outputs ^ inputs)}"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_render_matches_golden(case: Path) -> None:
    rendered = rendered_of(case)
    golden = case.with_name(case.name + ".rendered")
    text = yaml.safe_dump(rendered, sort_keys=True)
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"run with HEARTH_UPDATE_GOLDEN=1 to create {golden.name}"
    assert yaml.safe_load(golden.read_text()) == rendered


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_rendered_pod_is_a_valid_pod(case: Path) -> None:
    rendered = rendered_of(case)
    rendered["metadata"]["name"] = rendered["metadata"]["generateName"] + "abcde"
    kubernetes_validate.validate(rendered, "1.36.0", strict=True)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_patch_applies_and_is_idempotent(case: Path) -> None:
    deployment, runtimes = load_case(case)
    pod = apiserver_pod(deployment)
    answer = mutate_pod(admission_review(pod)["request"], runtimes, SETTINGS)["response"]
    assert answer["allowed"] is True and answer["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert not any(op["path"].startswith("/metadata/managedFields") for op in patch)
    patched = jsonpatch.apply_patch(copy.deepcopy(pod), patch)
    expected = render_for_pod(pod, runtimes, SETTINGS)
    expected["metadata"]["managedFields"] = pod["metadata"]["managedFields"]
    assert patched == expected
    # A rendered pod arriving again (Kubernetes may call a mutating webhook again, and asks it to be
    # idempotent; a forged stamp is dropped and the pod rendered anew) changes nothing: nothing rendered
    # is random or per-call.
    again = mutate_pod(admission_review(patched)["request"], runtimes, SETTINGS)["response"]
    assert again["allowed"] is True and json.loads(base64.b64decode(again.get("patch") or "W10=")) == []
    # Rendering a rendered pod whose stamp was stripped still adds nothing twice.
    stripped = copy.deepcopy(patched)
    del stripped["metadata"]["annotations"][RENDERED]
    assert render_for_pod(stripped, runtimes, SETTINGS) == patched


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_rendering_never_changes_its_input(case: Path) -> None:
    deployment, runtimes = load_case(case)
    pod = apiserver_pod(deployment)
    before = copy.deepcopy(pod)
    render_for_pod(pod, runtimes, SETTINGS)
    assert pod == before
