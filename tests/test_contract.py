"""The annotation contract: defaults, and a precise error (key, value, allowed, fix) for every mistake."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policies import Collector, ContractError, parse_pod, parse_scale, validate_deployment
from tests.support import ROOT, load_case

DEPLOYMENT, RUNTIMES = load_case(ROOT / "tests" / "golden" / "nvidia-hf.yaml")


def with_annotations(scale: dict[str, str] | None = None, pod: dict[str, str] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(DEPLOYMENT)
    if scale is not None:
        obj["metadata"]["annotations"] = scale
    if pod is not None:
        obj["spec"]["template"]["metadata"]["annotations"] = pod
    return obj


def problems_of(obj: dict[str, Any]) -> str:
    with pytest.raises(ContractError) as caught:
        validate_deployment(obj, RUNTIMES)
    return caught.value.message


def test_defaults() -> None:
    scale = parse_scale({}, Collector())
    assert (scale.min_replicas, scale.max_replicas, scale.target, scale.scale_down_delay) == (0, 1, 10, 300.0)
    assert (scale.cold_start, scale.heartbeat_interval, scale.activation_timeout, scale.queue_size) == (
        "keepalive",
        10.0,
        600.0,
        100,
    )
    errors = Collector()
    pod = parse_pod({"hearth.dev/model": "hf://Qwen/Qwen3-8B"}, errors)
    assert pod is not None and not errors.problems
    assert (pod.accelerators, pod.vendors, pod.runtime, pod.shm_size) == (1, (), None, "2Gi")


def test_the_example_deployment_is_valid() -> None:
    verdict = validate_deployment(DEPLOYMENT, RUNTIMES)
    assert verdict.scale.max_replicas == 2 and verdict.pod.vendors == ("nvidia", "ascend")
    assert verdict.warnings == ()


@pytest.mark.parametrize(
    ("scale", "pod", "expected"),
    [
        (
            {"hearth.dev/max-replicas": "three"},
            None,
            ['"hearth.dev/max-replicas"]', '"three"', "whole number", 'e.g. "3"'],
        ),
        ({"hearth.dev/min-replicas": "-1"}, None, ["min-replicas", '"-1"', "whole number"]),
        (
            {"hearth.dev/min-replicas": "3", "hearth.dev/max-replicas": "2"},
            None,
            ["max-replicas", "at least min-replicas (3)"],
        ),
        ({"hearth.dev/target": "0"}, None, ["target", '"0"', "from 1 to 100000"]),
        ({"hearth.dev/scale-down-delay": "5 minutes"}, None, ["scale-down-delay", '"5 minutes"', "duration", '"5m"']),
        ({"hearth.dev/cold-start": "warm"}, None, ["cold-start", '"warm"', "keepalive or reject"]),
        ({"hearth.dev/json-keepalive": "yes"}, None, ["json-keepalive", '"yes"', "true or false"]),
        (
            {"hearth.dev/max-replica": "3"},
            None,
            ['"hearth.dev/max-replica"]', "not a Hearth key", "did you mean hearth.dev/max-replicas"],
        ),
        (
            {"hearth.dev/model": "hf://a/b"},
            None,
            ["metadata.annotations", "belongs on the Deployment's spec.template", "move it"],
        ),
        (
            None,
            {"hearth.dev/model": "hf://a/b", "hearth.dev/target": "3"},
            ["spec.template.metadata.annotations", "target", "never restarts"],
        ),
        (
            None,
            {"hearth.dev/vendors": "nvidia"},
            ['"hearth.dev/vendors"]', "needs hearth.dev/model", "keep mode", "add hearth.dev/model, or remove"],
        ),
        (None, {"hearth.dev/model": "hf://a/b", "hearth.dev/port": "8000"}, ['"hearth.dev/port"]', "keep mode"]),
        (None, {"hearth.dev/port": "http"}, ['"hearth.dev/port"]', '"http"', "whole number"]),
        (None, {"hearth.dev/served-name": "a,,b"}, ["served-name", "separated by commas"]),
        (None, {"hearth.dev/model": "ftp://x/y"}, ['"ftp://x/y"', "hf://", "modelscope://", "pvc://"]),
        (None, {"hearth.dev/model": "hf://just-a-name"}, ["ORGANISATION/MODEL"]),
        (None, {"hearth.dev/model": "pvc://Models/x"}, ["PersistentVolumeClaim name"]),
        (None, {"hearth.dev/model": "pvc://models/../etc"}, ["plain relative path"]),
        (None, {"hearth.dev/model": "s3://A_B/x"}, ["bucket name"]),
        (
            None,
            {"hearth.dev/model": "hf://a/b", "hearth.dev/accelerators": "1.5"},
            ["accelerators", '"1.5"', "whole number"],
        ),
        (
            None,
            {"hearth.dev/model": "hf://a/b", "hearth.dev/vendors": "nvidia,,NVIDIA"},
            ["vendors", "distinct vendor names"],
        ),
        (
            None,
            {"hearth.dev/model": "hf://a/b", "hearth.dev/vendors": "nvidia", "hearth.dev/runtime": "x"},
            ["not both"],
        ),
        (
            None,
            {"hearth.dev/model": "hf://a/b", "hearth.dev/extra-args": "--x 'open"},
            ["extra-args", "close every quote"],
        ),
        (
            None,
            {"hearth.dev/model": "hf://a/b", "hearth.dev/extra-args": "--max-model-len 8192 --port=8090"},
            ["extra-args", '"--max-model-len 8192 --port=8090"', "must not set --port", "remove --port"],
        ),
        (
            None,
            {"hearth.dev/model": "hf://a/b", "hearth.dev/extra-args": "--served_model_name other"},
            ["must not set --served-model-name", "hearth.dev/served-name"],
        ),
        (
            None,
            {"hearth.dev/model": "hf://a/b", "hearth.dev/extra-args": "--host 127.0.0.2"},
            ["must not set --host"],
        ),
        (None, {"hearth.dev/model": "hf://a/b", "hearth.dev/shm-size": "lots"}, ["shm-size", "Kubernetes quantity"]),
        (None, {"hearth.dev/model": "hf://a/b", "hearth.dev/rendered": "{}"}, ["written by the webhook"]),
    ],
)
def test_every_mistake_names_key_value_and_fix(
    scale: dict[str, str] | None, pod: dict[str, str] | None, expected: list[str]
) -> None:
    message = problems_of(with_annotations(scale, pod))
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "fix:" in message


@pytest.mark.parametrize(
    "args", ["--max-model-len=8192 --gpu-memory-utilization 0.9", "--portable", "--model-impl vllm"]
)
def test_extra_args_the_runtime_does_not_own_pass(args: str) -> None:
    errors = Collector()
    spec = parse_pod({"hearth.dev/model": "hf://a/b", "hearth.dev/extra-args": args}, errors)
    assert errors.problems == [] and spec is not None and spec.extra_args


def test_all_problems_are_reported_at_once() -> None:
    message = problems_of(
        with_annotations({"hearth.dev/max-replicas": "x", "hearth.dev/target": "y"}, {"hearth.dev/port": "x"})
    )
    assert message.startswith("3 problems")


def test_an_unknowable_model_container_and_the_opt_in_label_are_required() -> None:
    obj = copy.deepcopy(DEPLOYMENT)
    obj["spec"]["template"]["spec"]["containers"] = [{"name": "main", "image": "a"}, {"name": "logs", "image": "b"}]
    del obj["spec"]["template"]["metadata"]["labels"]["hearth.dev/enabled"]
    message = problems_of(obj)
    assert '"main, logs"' in message and "cannot tell which container is the model" in message
    assert "add the pod-template annotation hearth.dev/container: NAME" in message
    assert 'hearth.dev/enabled: "true"' in message


GPU = {"limits": {"nvidia.com/gpu": "1"}}


@pytest.mark.parametrize(
    ("containers", "named", "chosen"),
    [
        ([{"name": "only"}], None, "only"),
        ([{"name": "logs"}, {"name": "model"}], None, "model"),  # the first wave's contract keeps working
        ([{"name": "logs"}, {"name": "vllm", "resources": GPU}], None, "vllm"),  # the one asking for a GPU
        ([{"name": "a", "resources": GPU}, {"name": "b", "resources": GPU}], "b", "b"),
        ([{"name": "model"}, {"name": "llm"}], "llm", "llm"),  # the annotation wins over the name
    ],
)
def test_which_container_is_the_model(containers: list[dict[str, Any]], named: str | None, chosen: str) -> None:
    from policies.adoption import model_container

    assert model_container(containers, named, {"nvidia.com/gpu"}, "here") == chosen


def test_a_container_annotation_naming_no_container_lists_them() -> None:
    obj = copy.deepcopy(DEPLOYMENT)
    obj["spec"]["template"]["metadata"]["annotations"]["hearth.dev/container"] = "vllm"
    message = problems_of(obj)
    assert '"hearth.dev/container"]' in message and "names no container; the containers are model" in message


def test_durations() -> None:
    errors = Collector()
    for text, seconds in [("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("0s", 0)]:
        spec = parse_scale({"hearth.dev/scale-down-delay": text}, errors)
        assert spec.scale_down_delay == seconds
    assert not errors.problems


def test_risky_choices_are_warnings() -> None:
    obj = with_annotations({"hearth.dev/scale-down-delay": "10s"})
    obj["spec"]["replicas"] = 2
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = "mine:latest"
    warnings = validate_deployment(obj, RUNTIMES).warnings
    assert any("spec.replicas is set" in w for w in warnings)
    assert any("scale-down-delay is 10s" in w for w in warnings)
    assert any("mine:latest" in w for w in warnings)
    assert all(len(w) <= 256 for w in warnings)  # the apiserver may truncate longer warnings


def test_replicas_intent_is_read_past_apiserver_defaulting() -> None:
    obj = copy.deepcopy(DEPLOYMENT)
    obj["spec"]["replicas"] = 1  # defaulted by the apiserver, and claimed by the Update manager
    obj["metadata"]["managedFields"] = [
        {"manager": "kubectl-create", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
    ]
    assert validate_deployment(obj, RUNTIMES).warnings == ()
    obj["spec"]["replicas"] = 3  # not the default: someone wrote it
    assert any("spec.replicas" in w for w in validate_deployment(obj, RUNTIMES).warnings)
    # Server-side apply: the applied configuration is exactly what the user wrote.
    obj["metadata"]["managedFields"] = [
        {"manager": "argocd-controller", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}},
        {
            "manager": "hearth-scaler",
            "operation": "Update",
            "subresource": "scale",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        },
    ]
    assert validate_deployment(obj, RUNTIMES).warnings == ()
    obj["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:replicas"] = {}
    assert any("spec.replicas" in w for w in validate_deployment(obj, RUNTIMES).warnings)
    # Client-side apply: the last-applied annotation says what the manifest holds.
    del obj["metadata"]["managedFields"]
    obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = '{"spec": {"selector": {}}}'
    assert validate_deployment(obj, RUNTIMES).warnings == ()


def test_no_runtime_yet_is_a_warning_not_an_error() -> None:
    verdict = validate_deployment(DEPLOYMENT, [])
    assert any("no runtime can serve" in w for w in verdict.warnings)


def test_creation_starts_at_min_replicas_unless_the_manifest_sets_replicas() -> None:
    from policies.deployment import with_scaler_defaults

    created = copy.deepcopy(DEPLOYMENT)
    created["spec"]["replicas"] = 1  # the apiserver's default
    created["metadata"]["managedFields"] = [
        {"manager": "kubectl-create", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    ]
    out = with_scaler_defaults(created, creating=True)
    assert out["spec"]["replicas"] == 0  # min-replicas
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "hearth.dev/placeholder:filled-by-runtime"
    assert with_scaler_defaults(created, creating=False)["spec"]["replicas"] == 1  # updates keep the scaler's
    created["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = '{"spec": {"replicas": 1}}'
    assert with_scaler_defaults(created, creating=True)["spec"]["replicas"] == 1  # written by the user: kept


def test_keep_mode_gets_no_placeholder_image() -> None:
    """Without hearth.dev/model the user's image runs: a container without one is the apiserver's to refuse,
    not Hearth's to fill with an image that does not exist."""
    from policies.deployment import with_scaler_defaults

    kept = copy.deepcopy(DEPLOYMENT)
    del kept["spec"]["template"]["metadata"]["annotations"]["hearth.dev/model"]
    del kept["spec"]["template"]["metadata"]["annotations"]["hearth.dev/vendors"]
    assert "image" not in with_scaler_defaults(kept, creating=True)["spec"]["template"]["spec"]["containers"][0]


def test_the_reference_documents_every_key_with_its_default() -> None:
    from policies.annotations import KEYS

    readme = (ROOT / "docs" / "reference" / "annotations.md").read_text()
    for key in KEYS:
        where = "Deployment metadata" if key.scope == "deployment" else "pod template"
        assert f"| `hearth.dev/{key.name}` | {where} | `{key.default}` | {key.doc} |" in readme, key.name
