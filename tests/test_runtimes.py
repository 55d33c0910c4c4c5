"""InferenceRuntime validation, the template language, runtime selection, and CRD-schema agreement."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies import Collector, ContractError, parse_pod, runtime_from_object, select_runtime
from policies.runtime import TEMPLATE_VARIABLES, fill_template, template_errors
from tests.support import ROOT, RUNTIMES, sample_runtimes

NVIDIA: dict[str, Any] = yaml.safe_load((RUNTIMES / "vllm-nvidia.yaml").read_text())
CRD = yaml.safe_load((ROOT / "manifests" / "crd-inferenceruntime.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def variant(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(NVIDIA)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = obj
        for part in parents:
            node = node[part]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return obj


def schema_accepts(obj: dict[str, Any]) -> bool:
    """The CRD's structural schema as JSON Schema. (Its CEL rule is checked by the real apiserver, in
    tests/e2e/test_cluster.py, with every case below.)"""
    try:
        jsonschema.validate(obj, SCHEMA)
    except jsonschema.ValidationError:
        return False
    return True


def test_samples_are_valid() -> None:
    names = {r.name: r for r in sample_runtimes()}
    assert set(names) == {"vllm-nvidia", "vllm-ascend-910b", "vllm-ascend-310p"}
    assert names["vllm-ascend-310p"].spec.accelerator.resource == "huawei.com/Ascend310P"
    assert "--enforce-eager" in names["vllm-ascend-310p"].spec.container.args
    mounts = [m.path for m in names["vllm-ascend-910b"].spec.accelerator.host_mounts]
    assert mounts == [
        "/usr/local/Ascend/driver",
        "/usr/local/bin/npu-smi",
        "/usr/local/dcmi",
        "/etc/ascend_install.info",
    ]
    assert (
        names["vllm-nvidia"].spec.probes.startup.failure_threshold
        * names["vllm-nvidia"].spec.probes.startup.period_seconds
        >= 1800
    )


INVALID = {
    "unknown template variable": variant(spec__container__args=["--model={{ model.path }}", "--x={{ model.size }}"]),
    "no model passed": variant(spec__container__args=["--port={{ port }}"], spec__container__command=["vllm"]),
    "bad vendor": variant(spec__vendor="NVIDIA"),
    "resource without domain": variant(spec__accelerator__resource="gpu"),
    "port out of range": variant(spec__container__port=70000),
    "missing image": variant(spec__container__image=None),
    "priority out of range": variant(spec__priority=5000),
    "bad toleration effect": variant(spec__accelerator__tolerations=[{"key": "a", "effect": "Sometimes"}]),
    "relative host mount": variant(spec__accelerator__hostMounts=[{"path": "usr/local"}]),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_runtimes_are_refused_by_the_validator(name: str) -> None:
    with pytest.raises(ContractError) as caught:
        runtime_from_object(INVALID[name])
    assert 'InferenceRuntime "vllm-nvidia" spec' in caught.value.message


@pytest.mark.parametrize("name", sorted(set(INVALID) - {"unknown template variable", "no model passed"}))
def test_crd_schema_refuses_what_the_validator_refuses(name: str) -> None:
    assert not schema_accepts(INVALID[name])


def test_crd_schema_accepts_the_samples() -> None:
    for path in sorted(RUNTIMES.glob("*.yaml")):
        assert schema_accepts(yaml.safe_load(path.read_text())), path.name


def test_unknown_field_is_refused_with_its_name() -> None:
    with pytest.raises(ContractError) as caught:
        runtime_from_object(variant(spec__container__imagePullPolicy="Always"))
    assert "imagePullPolicy" in caught.value.message and "remove the field" in caught.value.message


def test_template_language() -> None:
    assert template_errors("--model={{ model.path }} --port={{port}}") is None
    assert "unknown template variable {{ os.system }}" in (template_errors("{{ os.system }}") or "")
    assert "unbalanced" in (template_errors("--x={{ port") or "")
    assert fill_template("--tp={{ accelerators }}", {"accelerators": "2"}) == "--tp=2"


def pod_spec(**annotations: str) -> Any:
    errors = Collector()
    spec = parse_pod({"hearth.dev/model": "hf://a/b", **annotations}, errors)
    assert spec is not None and not errors.problems
    return spec


def test_selection_prefers_vendor_order_then_priority() -> None:
    runtimes = sample_runtimes()
    assert select_runtime(pod_spec(**{"hearth.dev/vendors": "nvidia,ascend"}), runtimes).name == "vllm-nvidia"
    assert select_runtime(pod_spec(**{"hearth.dev/vendors": "ascend,nvidia"}), runtimes).name == "vllm-ascend-910b"
    without_nvidia = [r for r in runtimes if r.spec.vendor != "nvidia"]
    assert (
        select_runtime(pod_spec(**{"hearth.dev/vendors": "nvidia,ascend"}), without_nvidia).name == "vllm-ascend-910b"
    )
    assert select_runtime(pod_spec(**{"hearth.dev/runtime": "vllm-ascend-310p"}), runtimes).name == "vllm-ascend-310p"


def test_selection_errors_name_what_is_available() -> None:
    runtimes = sample_runtimes()
    with pytest.raises(ContractError) as caught:
        select_runtime(pod_spec(**{"hearth.dev/runtime": "tgi"}), runtimes)
    assert '"tgi"' in caught.value.message and "vllm-nvidia (nvidia)" in caught.value.message
    with pytest.raises(ContractError) as caught:
        select_runtime(pod_spec(**{"hearth.dev/vendors": "amd"}), runtimes)
    assert '"amd"' in caught.value.message and "no InferenceRuntime" in caught.value.message


def test_equal_priority_tie_is_an_error_naming_both() -> None:
    twin = runtime_from_object(variant(metadata__name="vllm-nvidia-b"))
    with pytest.raises(ContractError) as caught:
        select_runtime(pod_spec(**{"hearth.dev/vendors": "nvidia"}), [*sample_runtimes(), twin])
    assert "vllm-nvidia and vllm-nvidia-b" in caught.value.message and "priority 100" in caught.value.message


def test_the_shipped_runtimes_serve_a_deployment_that_prefers_no_vendor() -> None:
    """vllm-nvidia and vllm-ascend-910b both had priority 100: a Deployment without hearth.dev/vendors or
    hearth.dev/runtime was unservable, refused as "tie for vendor ascend" although the vendors differ."""
    assert select_runtime(pod_spec(), sample_runtimes()).name == "vllm-nvidia"


def test_a_tie_between_vendors_names_both_and_the_vendors_fix() -> None:
    ascend = runtime_from_object(variant(metadata__name="ascend-twin", spec__vendor="ascend"))
    with pytest.raises(ContractError) as caught:
        select_runtime(pod_spec(), [runtime_from_object(variant()), ascend])
    message = caught.value.message
    assert "tie between vendors" in message and "nvidia" in message and "ascend" in message
    assert "hearth.dev/vendors" in message and "tie for vendor" not in message


OLD_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")  # the backtracking pattern, as the oracle on short texts


def oracle_errors(text: str) -> str | None:
    unknown = [m.group(1) for m in OLD_PLACEHOLDER.finditer(text) if m.group(1) not in TEMPLATE_VARIABLES]
    if unknown:
        return f"unknown template variable {{{{ {unknown[0]} }}}}; known: " + ", ".join(TEMPLATE_VARIABLES)
    # Each placeholder is cut out with a separator: joined, the braces on either side of one would make a
    # pair the text does not hold ('}{{model.path}}}' has a lone brace at each end, not a `}}`).
    stripped = OLD_PLACEHOLDER.sub("\0", text)
    return "unbalanced" if "{{" in stripped or "}}" in stripped else None


def kind(error: str | None) -> str | None:
    return None if error is None else "unknown" if error.startswith("unknown") else "unbalanced"


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.sampled_from(["{{", "}}", "{", "}", " ", "model.path", "port", "x", "="]), max_size=10).map("".join)
    | st.text(alphabet="{} \tm.pathodelrcsuiy", max_size=24)
)
@example("}{{model.path}}}")  # found by hypothesis: the oracle used to join the two lone braces
def test_the_linear_template_parser_agrees_with_the_pattern_it_replaced(text: str) -> None:
    found = template_errors(text)
    expected = oracle_errors(text)
    assert (found is None, found and found.startswith("unknown")) == (
        expected is None,
        expected and expected.startswith("unknown"),
    )
    if expected and expected.startswith("unknown"):
        assert found == expected
    if found is None:
        variables = dict.fromkeys(TEMPLATE_VARIABLES, "X")
        assert fill_template(text, variables) == OLD_PLACEHOLDER.sub(lambda m: variables[m.group(1)], text)


def test_a_hostile_template_is_refused_in_linear_time() -> None:
    """`{{` and 100,000 spaces: the old pattern backtracked for minutes (pytest's timeout would fail this);
    the one-pass parser answers at once."""
    assert template_errors("--x={{" + " " * 100_000) == "unbalanced '{{' or '}}'; write variables as {{ model.path }}"
    assert template_errors("{{" * 50_000 + "}}") is not None
