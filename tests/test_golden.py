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
TOKEN = "golden-drain-token"  # the webhook generates one per pod


def rendered_of(case: Path) -> dict[str, Any]:
    deployment, runtimes = load_case(case)
    validate_deployment(deployment, runtimes)
    pod = apiserver_pod(deployment)
    del pod["metadata"]["managedFields"]  # the webhook drops them before rendering
    return render_for_pod(pod, runtimes, SETTINGS, TOKEN)


def drain_token_of(pod: dict[str, Any]) -> str:
    """The token the webhook generated for this pod (random per pod), as the preStop hook sends it."""
    sidecar = next(c for c in pod["spec"]["containers"] if c["name"] == "hearth-gateway")
    token: str = next(e["value"] for e in sidecar["env"] if e["name"] == "HEARTH_DRAIN_TOKEN")
    return token


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
    token = drain_token_of(patched)
    expected = render_for_pod(pod, runtimes, SETTINGS, token)
    expected["metadata"]["managedFields"] = pod["metadata"]["managedFields"]
    assert patched == expected
    # A rendered pod arriving again (a forgery: the webhook sees each pod once) is rendered again, which
    # changes nothing but its drain token.
    again = mutate_pod(admission_review(patched)["request"], runtimes, SETTINGS)["response"]
    ops = json.loads(base64.b64decode(again["patch"]))
    hooks = [c for c in patched["spec"]["containers"] if "httpGet" in c.get("lifecycle", {}).get("preStop", {})]
    assert again["allowed"] is True and len(ops) == 1 + len(hooks)  # the sidecar's token and the hook's
    assert all(op["op"] == "replace" and op["path"].endswith("/value") for op in ops)
    # Rendering a rendered pod whose stamp was stripped still adds nothing twice.
    stripped = copy.deepcopy(patched)
    del stripped["metadata"]["annotations"][RENDERED]
    assert render_for_pod(stripped, runtimes, SETTINGS, token) == patched


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_rendering_never_changes_its_input(case: Path) -> None:
    deployment, runtimes = load_case(case)
    pod = apiserver_pod(deployment)
    before = copy.deepcopy(pod)
    render_for_pod(pod, runtimes, SETTINGS, TOKEN)
    assert pod == before
