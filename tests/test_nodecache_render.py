"""How the webhook renders a pod whose runtime has a node-local model cache (policies.render)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from policies import RenderSettings, render_for_pod, start_failure
from policies.errors import ContractError
from policies.modelcache import CACHED_MODEL, node_label
from policies.objects import published_failure
from policies.runtime import runtime_from_object
from tests.support import RUNTIMES, apiserver_pod

SETTINGS = RenderSettings()


def runtime(cache: bool = True) -> Any:
    body = yaml.safe_load((RUNTIMES / "vllm-nvidia.yaml").read_text())
    if not cache:
        body["spec"].pop("cache")
    return runtime_from_object(body)


def deployment(model: str = "hf://Qwen/Qwen3-8B", **pod: Any) -> dict[str, Any]:
    token = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}
    container: dict[str, Any] = {"name": "model", "env": [token]}
    container.update(pod.pop("container", {}))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "qwen", "namespace": "ai", "labels": {"hearth.dev/enabled": "true"}},
        "spec": {
            "selector": {"matchLabels": {"app": "qwen"}},
            "template": {
                "metadata": {"labels": {"app": "qwen"}, "annotations": {"hearth.dev/model": model}},
                "spec": {"containers": [container], **pod},
            },
        },
    }


def render(dep: dict[str, Any], cache: bool = True) -> dict[str, Any]:
    pod = apiserver_pod(dep)
    before = copy.deepcopy(pod)
    out = render_for_pod(pod, [runtime(cache)], SETTINGS, "token")
    assert pod == before
    return out


def containers(pod: dict[str, Any], kind: str = "containers") -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod["spec"].get(kind, [])}


def test_a_hub_model_loads_from_the_node_cache_which_only_the_fetcher_writes() -> None:
    pod = render(deployment())
    model = containers(pod)["model"]
    fetch = containers(pod, "initContainers")["hearth-fetch"]
    assert model["args"][0] == "/var/lib/hearth/models/huggingface/Qwen/Qwen3-8B"
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in model["env"]
    assert not any(e["name"] == "HF_HOME" for e in model["env"])
    assert {"name": "hearth-node-cache", "mountPath": "/var/lib/hearth/models", "readOnly": True} in model[
        "volumeMounts"
    ]
    assert fetch["volumeMounts"] == [{"name": "hearth-node-cache", "mountPath": "/var/lib/hearth/models"}]
    assert "--model=hf://Qwen/Qwen3-8B" in fetch["args"]
    assert '--credentials=Secret "hf" (key t, variable HF_TOKEN)' in fetch["args"]
    assert [e["name"] for e in fetch["env"]] == ["HF_TOKEN"]
    assert fetch["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    writers = [
        c["name"]
        for kind in ("containers", "initContainers")
        for c in pod["spec"].get(kind, [])
        for m in c.get("volumeMounts", [])
        if m["name"] == "hearth-node-cache" and not m.get("readOnly")
    ]
    assert writers == ["hearth-fetch"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "hearth-node-cache")
    assert volume["hostPath"] == {"path": "/var/lib/hearth/models", "type": "DirectoryOrCreate"}
    assert pod["metadata"]["annotations"][CACHED_MODEL] == "huggingface/Qwen/Qwen3-8B"
    preferred = pod["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    holding = {"key": node_label("huggingface/Qwen/Qwen3-8B"), "operator": "Exists"}
    assert preferred == [{"weight": 100, "preference": {"matchExpressions": [holding]}}]


def test_without_a_cache_the_runtime_downloads_into_an_empty_dir_as_before() -> None:
    pod = render(deployment(), cache=False)
    assert "initContainers" not in pod["spec"] and "affinity" not in pod["spec"]
    assert containers(pod)["model"]["args"][0] == "Qwen/Qwen3-8B"


def test_the_users_own_hub_cache_mount_and_pvc_models_keep_working() -> None:
    mounted: dict[str, Any] = {
        "container": {"volumeMounts": [{"name": "hf", "mountPath": "/root/.cache/huggingface"}]},
        "volumes": [{"name": "hf", "persistentVolumeClaim": {"claimName": "hf-cache"}}],
    }
    pod = render(deployment(**mounted))
    assert "initContainers" not in pod["spec"]
    assert {"name": "HF_HOME", "value": "/root/.cache/huggingface"} in containers(pod)["model"]["env"]
    pvc = render(deployment("pvc://models/qwen3-8b"))
    assert "initContainers" not in pvc["spec"]
    assert containers(pvc)["model"]["args"][0] == "/mnt/models/qwen3-8b"


@pytest.mark.parametrize(
    "path", ["/var/lib/hearth/models", "/var/lib/hearth/models/", "/var/lib", "/", "/var/lib/hearth/models/huggingface"]
)
def test_a_pod_may_not_mount_the_node_cache_by_a_host_path_of_its_own(path: str) -> None:
    volumes = [{"name": "sneaky", "hostPath": {"path": path}}]
    with pytest.raises(ContractError, match="overlaps the node's model cache"):
        render(deployment(volumes=volumes))
    render(deployment(volumes=[{"name": "other", "hostPath": {"path": "/var/lib/hearth-other"}}]))


def test_a_failed_fetch_is_the_models_start_failure_in_the_fetchers_words() -> None:
    message = 'Org/Gated is gated and the hub refused the token from Secret "hf" (key t, variable HF_TOKEN): ...'
    pod = {
        "metadata": {"name": "qwen-abc"},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "hearth-fetch",
                    "ready": False,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message}},
                }
            ]
        },
    }
    assert start_failure({}, [pod]) == f"pod qwen-abc: the model could not be fetched: {message}"
    fetching = {
        "metadata": {"name": "p"},
        "status": {"initContainerStatuses": [{"name": "hearth-fetch", "state": {"running": {}}}]},
    }
    assert start_failure({}, [fetching]) is None


def test_held_callers_read_why_the_model_does_not_start() -> None:
    why = 'pod q-1: the model could not be fetched: Org/Gated is gated and the hub refused the token from Secret "hf"'
    deployment = {
        "metadata": {"labels": {"hearth.dev/phase": "Degraded"}},
        "status": {
            "conditions": [
                {
                    "type": "hearth.dev/Serving",
                    "reason": "Degraded",
                    "message": f"demand 1; desired 1; steady; failed: {why}",
                }
            ]
        },
    }
    assert published_failure(deployment) == f"its Deployment is Degraded: {why}"
    deployment["status"] = {}
    assert published_failure(deployment) == "its Deployment is Degraded"
