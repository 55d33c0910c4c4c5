"""LLMService: the announcement's one-manifest interface, compiled into an annotated Deployment (pure parts:
the schema, the compiler, the refusals at the LLMService's own paths, the status mirror). On the local
cluster: tests/e2e/test_llmservice.py."""

from __future__ import annotations

import asyncio
import copy
import os
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from common.kubeapi import ApiError
from policies import ContractError, RenderSettings, validate_deployment
from policies.annotations import KEYS, PHASE_LABEL, PREFIX
from policies.llmservice import NOT_OFFERED, OWNER_LABEL, POD_FIELDS, SCALE_FIELDS, compile_deployment, parse_spec
from policies.llmservice import validate_llmservice as validate
from policies.phases import condition
from policies.service_status import crd, mirror, predicted_runtime, same, with_conditions
from scaler.llmservices import FIELD_MANAGER, LLMServiceController, holds_replicas_alone, owned_by, spec_hash
from scaler.metrics import ScalerMetrics
from tests.support import ROOT, sample_runtimes
from webhook.admission import check_llmservice

CRD_FILE = ROOT / "manifests" / "crd-llmservice.yaml"
SAMPLE = ROOT / "examples" / "llmservice" / "qwen3-8b.yaml"
HEADER = (
    "# LLMService: one short object per model, compiled by Hearth's scaler into an annotated Deployment.\n"
    "# Generated from policies/llmservice.py (the validator):\n"
    "# HEARTH_UPDATE_GOLDEN=1 pytest tests/test_llmservice.py;\n"
    "# do not edit by hand.\n"
)


def sample() -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    obj["metadata"]["uid"] = "u-1"
    return obj


def with_spec(**changes: Any) -> dict[str, Any]:
    obj = sample()
    for path, value in changes.items():
        node = obj["spec"]
        *parents, last = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return obj


def problems(obj: dict[str, Any]) -> list[str]:
    with pytest.raises(ContractError) as caught:
        validate(obj, sample_runtimes())
    return [str(p) for p in caught.value.problems]


def test_the_crd_is_the_validators_schema() -> None:
    text = HEADER + yaml.safe_dump(crd(), sort_keys=False, width=120, allow_unicode=True)
    if os.environ.get("HEARTH_UPDATE_GOLDEN"):
        CRD_FILE.write_text(text)
    assert CRD_FILE.read_text() == text, "run HEARTH_UPDATE_GOLDEN=1 pytest tests/test_llmservice.py"


def test_every_field_of_the_crd_is_described() -> None:
    def walk(node: dict[str, Any], path: str) -> list[str]:
        missing = [] if node.get("description") or path.endswith(".metadata") else [path]
        for name, child in (node.get("properties") or {}).items():
            missing += walk(child, f"{path}.{name}")
        if "items" in node and "properties" in node["items"]:
            missing += [m for m in walk(node["items"], path + "[]") if m != path + "[]"]
        return missing

    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert [m for m in walk(schema, "") if m] == []


def test_every_annotation_of_the_contract_has_a_field_or_a_reason() -> None:
    offered = {**SCALE_FIELDS, **POD_FIELDS, **NOT_OFFERED}
    assert sorted(offered) == sorted(k.name for k in KEYS)


def test_the_announcements_sample_compiles_into_the_deployment_a_user_would_write() -> None:
    deployment = compile_deployment(sample())
    assert deployment["metadata"]["annotations"] == {
        PREFIX + "min-replicas": "0",
        PREFIX + "max-replicas": "3",
        PREFIX + "target": "10",
    }
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        PREFIX + "model": "modelscope://Qwen/Qwen3-8B-Instruct",
        PREFIX + "vendors": "nvidia,ascend",
        PREFIX + "accelerators": "1",
    }
    assert template["spec"]["containers"] == [{"name": "model"}]
    assert "replicas" not in deployment["spec"]
    assert deployment["metadata"]["ownerReferences"][0] | {} == {
        "apiVersion": "serving.hearth.dev/v1alpha1",
        "kind": "LLMService",
        "name": "qwen3-8b",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert deployment["spec"]["selector"] == {"matchLabels": {OWNER_LABEL: "qwen3-8b"}}
    validate_deployment(deployment, sample_runtimes())  # the Deployment path accepts it as it is


def test_every_field_reaches_its_annotation() -> None:
    obj = with_spec(
        model={"source": {"uri": "hf://Qwen/Qwen3-8B"}, "servedNames": ["qwen", "q3"]},
        runtime={"name": "vllm-nvidia", "args": ["--max-model-len=8192", "--enforce-eager"]},
        resources={"accelerators": 2, "cacheSize": "40Gi", "shmSize": "4Gi"},
        scaling={
            "min": 1,
            "max": 4,
            "target": 5,
            "scaleDownDelay": "10m",
            "drainTimeout": "2m",
            "priority": 7,
            "prewarm": "all",
            "anticipate": True,
        },
        coldStart={
            "mode": "reject",
            "activationTimeout": "3m",
            "queueSize": 7,
            "progress": True,
            "heartbeatInterval": "5s",
            "jsonKeepalive": True,
        },
    )
    deployment = compile_deployment(obj)
    scale = {k.removeprefix(PREFIX): v for k, v in deployment["metadata"]["annotations"].items()}
    pod = {k.removeprefix(PREFIX): v for k, v in deployment["spec"]["template"]["metadata"]["annotations"].items()}
    assert scale == {
        "min-replicas": "1", "max-replicas": "4", "target": "5", "scale-down-delay": "10m", "priority": "7",
        "prewarm": "true", "anticipate": "true", "cold-start": "reject", "activation-timeout": "3m", "queue-size": "7",
        "heartbeat-interval": "5s", "json-keepalive": "true", "cold-start-progress": "true",
    }  # fmt: skip
    assert pod == {
        "model": "hf://Qwen/Qwen3-8B", "served-name": "qwen,q3", "runtime": "vllm-nvidia",
        "extra-args": "--max-model-len=8192 --enforce-eager", "accelerators": "2", "cache-size": "40Gi",
        "shm-size": "4Gi", "drain-timeout": "2m",
    }  # fmt: skip
    assert set(scale) | set(pod) | {"vendors"} == set(SCALE_FIELDS) | set(POD_FIELDS)  # vendors: the sample's
    verdict = validate(obj, sample_runtimes())
    assert verdict.scale.priority == 7 and verdict.pod.extra_args == ("--max-model-len=8192", "--enforce-eager")


def test_the_pod_template_overlay_merges_into_the_model_container() -> None:
    template: dict[str, Any] = {
        "metadata": {"labels": {"team": "a"}},
        "spec": {
            "containers": [{"name": "model", "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}]}],
            "nodeSelector": {"pool": "a100"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        },
    }
    deployment = compile_deployment(with_spec(template=template))
    pod = deployment["spec"]["template"]
    assert pod["spec"]["containers"] == template["spec"]["containers"]
    assert pod["spec"]["nodeSelector"] == {"pool": "a100"}
    assert pod["metadata"]["labels"] == {"team": "a", OWNER_LABEL: "qwen3-8b", "hearth.dev/enabled": "true"}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"scaling__max": 0}, 'spec.scaling.max is "0": Input should be greater than or equal to 1'),
        (
            {"scaling__metric": "gpuUtilization"},
            "spec.scaling.metric is \"gpuUtilization\": Input should be 'queueDepth'",
        ),
        ({"scaling__scaleDownDelay": "5 minutes"}, 'spec.scaling.scaleDownDelay is "5 minutes"'),
        ({"scaling__scaleDownDelay": "99999h"}, 'spec.scaling.scaleDownDelay is "99999h": must be from 0s to 168h'),
        ({"model": {"source": {"uri": "ftp://x/y"}}}, 'spec.model.source.uri is "ftp://x/y"'),
        ({"runtime": {"selector": {"vendor": ["nvidia", "nvidia"]}}}, "spec.runtime.selector.vendor"),
        (
            {"runtime": {"selector": {"vendor": ["nvidia"]}, "name": "vllm-nvidia"}},
            "spec.runtime: give either selector or name",
        ),
        ({"runtime": {"args": ["--port=9"]}}, 'spec.runtime.args is "--port=9": must not set --port'),
        ({"scaling__min": 5}, "spec.scaling: max (3) must be at least min (5)"),
        ({"coldStart": {"mode": "wait"}}, 'spec.coldStart.mode is "wait"'),
        ({"autoscale": True}, 'spec.autoscale is "True": Extra inputs are not permitted; fix: remove the field'),
        ({"template": {"metadata": {"annotations": {"hearth.dev/target": "3"}}}}, "use the field spec.scaling.target"),
        (
            {"template": {"metadata": {"annotations": {"hearth.dev/vendors": "x"}}}},
            "use the field spec.runtime.selector.vendor",
        ),
        ({"template": {"spec": {"volumes": [{"name": "hearth-model", "emptyDir": {}}]}}}, "spec.template.spec.volumes"),
    ],
)
def test_refusals_name_the_llmservices_own_fields(changes: dict[str, Any], expected: str) -> None:
    found = problems(with_spec(**changes))
    assert any(expected in p for p in found), found


def test_the_webhook_refuses_with_the_path_and_warns_like_for_a_deployment() -> None:
    def review(obj: dict[str, Any], runtimes: list[Any]) -> dict[str, Any]:
        request = {"uid": "r", "operation": "CREATE", "object": obj,
                   "kind": {"group": "serving.hearth.dev", "version": "v1alpha1", "kind": "LLMService"}}  # fmt: skip
        response: dict[str, Any] = check_llmservice(request, runtimes, RenderSettings())["response"]
        return response

    refused = review(with_spec(scaling__max=0), sample_runtimes())
    assert not refused["allowed"]
    assert refused["status"]["message"].startswith('hearth: LLMService qwen3-8b: spec.scaling.max is "0"')
    warned = review(sample(), [])
    assert warned["allowed"] and any("no InferenceRuntime" in w or "runtime" in w for w in warned["warnings"])


def test_at_zero_the_runtime_shown_is_the_one_a_pod_would_get() -> None:
    assert predicted_runtime(parse_spec(sample()), sample_runtimes()) == "vllm-nvidia"
    ascend = [r for r in sample_runtimes() if r.spec.vendor == "ascend"]
    assert predicted_runtime(parse_spec(sample()), ascend) in {r.name for r in ascend}
    assert predicted_runtime(parse_spec(sample()), []) == ""


def deployment_in(phase: str, desired: int, ready: int, failure: str | None = None) -> dict[str, Any]:
    status = {"demand": 4, "desired": desired, "ready": ready, "runtime": "sim", "reason": "r", "failure": failure}
    return {
        "metadata": {"name": "qwen3-8b", "labels": {PHASE_LABEL: phase}},
        "spec": {"replicas": desired},
        "status": {"conditions": [condition(phase, status, "t", "t")]},
    }


def test_the_status_mirrors_hearths_phase_and_says_why() -> None:
    at_zero = mirror(3, deployment_in("ScaledToZero", 0, 0), "vllm-nvidia")
    assert at_zero == {
        "observedGeneration": 3, "runtime": "sim", "replicas": 0, "readyReplicas": 0, "demand": 4,
        "deployment": "qwen3-8b", "message": "", "phase": "ScaledToZero",
    }  # fmt: skip
    degraded = mirror(3, deployment_in("Degraded", 1, 0, "pod refused: no runtime x"), "")
    assert degraded["phase"] == "Degraded" and degraded["message"] == "pod refused: no runtime x"
    assert mirror(1, None, "vllm-nvidia")["phase"] == "Pending"
    assert mirror(1, None, "", conflict="taken")["phase"] == "Conflict"
    assert mirror(1, None, "", problem="bad")["message"] == "bad"


def test_conditions_move_their_time_only_when_their_status_moves() -> None:
    first = with_conditions(mirror(1, deployment_in("ScaledToZero", 0, 0), ""), None, "t1")
    assert [(c["type"], c["status"]) for c in first["conditions"]] == [("Ready", "True"), ("Serving", "False")]
    waking = with_conditions(mirror(1, deployment_in("Activating", 1, 0), ""), first, "t2")
    ready = with_conditions(mirror(1, deployment_in("Ready", 1, 1), ""), waking, "t3")
    assert {c["type"]: c["lastTransitionTime"] for c in ready["conditions"]} == {"Ready": "t3", "Serving": "t3"}
    again = with_conditions(mirror(1, deployment_in("Ready", 1, 1), ""), ready, "t4")
    assert same(ready, again) and again["conditions"][0]["lastTransitionTime"] == "t3"


def test_ownership_and_the_replicas_hand_over() -> None:
    deployment = compile_deployment(sample())
    assert owned_by(deployment, "u-1") and not owned_by(deployment, "u-2")
    made = copy.deepcopy(deployment)
    made["metadata"]["managedFields"] = [{"manager": FIELD_MANAGER, "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
    assert holds_replicas_alone(made)
    made["metadata"]["managedFields"].append({"manager": "hearth-scaler", "fieldsV1": {"f:spec": {"f:replicas": {}}}})
    assert not holds_replicas_alone(made)
    edited = with_spec(scaling__max=5)
    assert spec_hash(compile_deployment(edited)) != spec_hash(deployment)


class FakeApi:
    """The apiserver as the controller meets it: Deployments by path, applies recorded (or refused)."""

    def __init__(self, refuse: ApiError | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.patches: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.refuse = refuse

    async def get(self, path: str) -> dict[str, Any]:
        if path not in self.objects:
            raise ApiError(404, "not found")
        return self.objects[path]

    async def patch(self, path: str, body: dict[str, Any], params: dict[str, str], content_type: str = "") -> Any:
        self.patches.append((path, body, params))
        if path.endswith("/status"):
            return body
        if self.refuse is not None:
            raise self.refuse
        self.objects[path] = body
        return body


def controller(api: FakeApi, deployments: dict[str, Any] | None = None) -> LLMServiceController:
    async def runtimes() -> list[Any]:
        return sample_runtimes()

    found = deployments or {}
    return LLMServiceController(api, lambda: found, runtimes, ScalerMetrics(CollectorRegistry()))  # type: ignore[arg-type]


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].update({"generation": 2})
    return obj


def statuses(api: FakeApi) -> list[dict[str, Any]]:
    return [body["status"] for path, body, _ in api.patches if path.endswith("/status")]


def test_the_controller_applies_once_then_only_mirrors() -> None:
    api = FakeApi()
    control = controller(api)
    asyncio.run(control._one(stored(sample()), sample_runtimes()))
    (path, body, params), _ = api.patches
    assert path == "/apis/apps/v1/namespaces/ai/deployments/qwen3-8b" and params["fieldManager"] == FIELD_MANAGER
    assert params["force"] == "true" and "replicas" not in body["spec"]
    status = statuses(api)[0]
    assert status["phase"] == "Pending" and status["runtime"] == "vllm-nvidia" and status["observedGeneration"] == 2
    again = controller(api, {"ai/qwen3-8b": api.objects[path]})
    asyncio.run(again._one(stored(sample()) | {"status": status}, sample_runtimes()))
    assert len(api.patches) == 2  # the same spec: no apply; the same status: no write


def test_a_deployment_the_apiserver_refuses_turns_the_llmservice_invalid_with_its_words() -> None:
    api = FakeApi(refuse=ApiError(422, 'Deployment.apps "qwen3-8b" is invalid: spec.template.spec.containers[0].env'))
    asyncio.run(controller(api)._one(stored(sample()), sample_runtimes()))
    (status,) = statuses(api)
    assert status["phase"] == "Invalid" and "was refused: Deployment.apps" in status["message"]
    assert [c["status"] for c in status["conditions"]] == ["False", "False"]


def test_a_foreign_deployment_of_the_same_name_is_a_conflict_and_left_alone() -> None:
    api = FakeApi()
    foreign = {"metadata": {"name": "qwen3-8b", "namespace": "ai"}, "spec": {"replicas": 1}}
    api.objects["/apis/apps/v1/namespaces/ai/deployments/qwen3-8b"] = foreign
    asyncio.run(controller(api)._one(stored(sample()), sample_runtimes()))
    assert [p for p, _, _ in api.patches] == [
        "/apis/serving.hearth.dev/v1alpha1/namespaces/ai/llmservices/qwen3-8b/status"
    ]
    assert statuses(api)[0]["phase"] == "Conflict"
