"""Each real-world shape of the corpus in the other mode too: the render-mode cases (which all ask for an
accelerator) adopted in keep mode, and the keep-mode cases that ask for an accelerator rendered from a
runtime. Golden files in tests/golden/modes/ (refresh with HEARTH_UPDATE_GOLDEN=1 and review the diff)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from policies import (
    RENDER_ONLY_KEYS,
    RenderSettings,
    accelerator_resources,
    render_for_pod,
    reported_name,
    validate_deployment,
)
from tests.support import GOLDEN, apiserver_pod, load_case, sample_runtimes
from tests.test_adoption import containers

MODES = GOLDEN / "modes"
UPDATE = os.environ.get("HEARTH_UPDATE_GOLDEN") == "1"


def asks_for_an_accelerator(deployment: dict[str, Any]) -> bool:
    names = accelerator_resources(sample_runtimes())
    return any(
        names & set((c.get("resources") or {}).get("limits") or {})
        for c in deployment["spec"]["template"]["spec"]["containers"]
    )


def other_mode(case: Path) -> tuple[str, dict[str, Any]]:
    deployment, _ = load_case(case)
    other = copy.deepcopy(deployment)
    annotations = other["spec"]["template"]["metadata"].setdefault("annotations", {})
    if "hearth.dev/model" in annotations:  # render mode -> keep mode: the user's server as written
        for key in ["model", *RENDER_ONLY_KEYS]:
            annotations.pop(f"hearth.dev/{key}", None)
        return "keep", other
    model = next(c for c in other["spec"]["template"]["spec"]["containers"] if c.get("resources"))
    annotations["hearth.dev/model"] = f"hf://{reported_name(model)}"  # keep mode -> render mode
    annotations.pop("hearth.dev/port", None)
    return "render", other


CASES = [
    c
    for c in sorted(GOLDEN.glob("adopt-*.yaml")) + sorted(GOLDEN.glob("keep-*.yaml"))
    if asks_for_an_accelerator(load_case(c)[0])
]


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_the_other_mode_renders_a_valid_pod_that_matches_its_golden_file(case: Path) -> None:
    mode, deployment = other_mode(case)
    _, runtimes = load_case(case)
    validate_deployment(deployment, runtimes)
    pod = apiserver_pod(deployment)
    del pod["metadata"]["managedFields"]
    rendered = render_for_pod(pod, runtimes, RenderSettings())
    golden = MODES / f"{case.stem}.{mode}.rendered"
    if UPDATE:
        MODES.mkdir(exist_ok=True)
        golden.write_text(yaml.safe_dump(rendered, sort_keys=True))
    assert golden.exists(), f"run with HEARTH_UPDATE_GOLDEN=1 to create {golden.name}"
    assert yaml.safe_load(golden.read_text()) == rendered
    named = copy.deepcopy(rendered)
    named["metadata"]["name"] = named["metadata"]["generateName"] + "abcde"
    kubernetes_validate.validate(named, "1.36.0", strict=True)
    template = deployment["spec"]["template"]["spec"]
    if mode == "keep":  # the user's containers as written
        for theirs in template["containers"]:
            got = containers(rendered)[theirs["name"]]
            assert (got["image"], got.get("command"), got.get("args")) == (
                theirs["image"],
                theirs.get("command"),
                theirs.get("args"),
            )


def test_no_mode_golden_file_is_unused() -> None:
    expected = {f"{c.stem}.{other_mode(c)[0]}.rendered" for c in CASES}
    assert {p.name for p in MODES.glob("*.rendered")} == expected
