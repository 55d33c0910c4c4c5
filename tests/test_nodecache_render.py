"""How the webhook renders a pod whose runtime has a node-local model cache (policies.render)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from policies import RenderSettings, render_for_pod, start_failure, validate_deployment
from policies.errors import ContractError
from policies.modelcache import CACHED_MODEL, hub_id, node_label
from policies.objects import published_failure
from policies.runtime import runtime_from_object
from tests.support import ROOT, RUNTIMES, apiserver_pod

SETTINGS = RenderSettings()
KEY = f"huggingface/{hub_id('https://huggingface.co')}/Qwen/Qwen3-8B"  # the shipped runtime names no mirror


def runtime(cache: bool = True, **settings: Any) -> Any:
    body = yaml.safe_load((RUNTIMES / "vllm-nvidia.yaml").read_text())
    if not cache:
        body["spec"].pop("cache")
    else:
        body["spec"]["cache"].update(settings)
    return runtime_from_object(body)


def deployment(model: str | None = "hf://Qwen/Qwen3-8B", **pod: Any) -> dict[str, Any]:
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
                "metadata": {"labels": {"app": "qwen"}, "annotations": {"hearth.dev/model": model} if model else {}},
                "spec": {"containers": [container], **pod},
            },
        },
    }


def render(dep: dict[str, Any], cache: bool = True, **settings: Any) -> dict[str, Any]:
    pod = apiserver_pod(dep)
    before = copy.deepcopy(pod)
    out = render_for_pod(pod, [runtime(cache, **settings)], SETTINGS)
    assert pod == before
    return out


def containers(pod: dict[str, Any], kind: str = "containers") -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod["spec"].get(kind, [])}


def test_a_hub_model_loads_from_the_node_cache_which_only_the_fetcher_writes() -> None:
    pod = render(deployment())
    model = containers(pod)["model"]
    fetch = containers(pod, "initContainers")["hearth-fetch"]
    assert model["args"][0] == f"/var/lib/hearth/models/{KEY}"
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
    assert "--endpoint=https://huggingface.co" in fetch["args"]
    assert pod["metadata"]["annotations"][CACHED_MODEL] == KEY
    preferred = pod["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    holding = {"key": node_label(KEY), "operator": "Exists"}
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
    "path",
    [
        "/var/lib/hearth/models",
        "/var/lib/hearth/models/",
        "/var/lib",
        "/",
        "/var/lib/hearth/models/huggingface",
        "//var/lib/hearth/models",  # posixpath.normpath keeps a leading //: this passed the check
        "/var//lib/./hearth/models/x",
    ],
)
@pytest.mark.parametrize("model", ["hf://Qwen/Qwen3-8B", None])
def test_a_pod_may_not_mount_the_node_cache_by_a_host_path_of_its_own(path: str, model: str | None) -> None:
    """In render mode and in keep mode (no hearth.dev/model: the check used to run in render mode only)."""
    volumes = [{"name": "sneaky", "hostPath": {"path": path}}]
    keep = {"container": {"image": "my/server:1"}}
    with pytest.raises(ContractError, match="overlaps the node's model cache"):
        render(deployment(model, volumes=volumes, **({} if model else keep)))
    render(deployment(model, volumes=[{"name": "other", "hostPath": {"path": "/var/lib/hearth-other"}}], **keep))


def test_a_template_mounting_the_cache_is_refused_at_apply_in_keep_mode_too() -> None:
    """Not only when its pods are created: `kubectl apply` of the Deployment says so."""
    volumes = [{"name": "x", "hostPath": {"path": "//var/lib"}}]
    keep = deployment(None, container={"image": "my/server:1"}, volumes=volumes)
    keep["spec"]["template"]["metadata"]["labels"]["hearth.dev/enabled"] = "true"
    with pytest.raises(ContractError, match=r"volumes\[0\].hostPath.path is \"//var/lib\": overlaps the node"):
        validate_deployment(keep, [runtime()])
    validate_deployment(keep, [runtime(cache=False)])  # no runtime with a cache: nothing to guard


def test_the_cache_entry_is_bound_to_the_hub_it_is_fetched_from() -> None:
    """A tenant's own HF_ENDPOINT used to fill the entry every other tenant loads (poisoning); now each hub
    has its own entries, and the fetcher is told the hub as an argument, not by the environment."""
    own_hub = {"container": {"env": [{"name": "HF_ENDPOINT", "value": "https://evil.example/"}]}}
    theirs, ours = render(deployment(**own_hub)), render(deployment())  # type: ignore[arg-type]
    key = theirs["metadata"]["annotations"][CACHED_MODEL]
    assert key == f"huggingface/{hub_id('https://evil.example')}/Qwen/Qwen3-8B" and key != KEY
    assert containers(theirs)["model"]["args"][0] == f"/var/lib/hearth/models/{key}"
    fetch = containers(theirs, "initContainers")["hearth-fetch"]
    assert "--endpoint=https://evil.example" in fetch["args"]
    assert "HF_ENDPOINT" not in {e["name"] for e in fetch["env"]}
    assert containers(ours, "initContainers")["hearth-fetch"]["args"] != fetch["args"]
    hidden = {"container": {"env": [{"name": "HF_ENDPOINT", "valueFrom": {"secretKeyRef": {"name": "s", "key": "e"}}}]}}
    with pytest.raises(ContractError, match="the hub endpoint must be a plain value"):
        render(deployment(**hidden))  # type: ignore[arg-type]
    applied = deployment(**hidden)  # type: ignore[arg-type]
    applied["spec"]["template"]["metadata"]["labels"]["hearth.dev/enabled"] = "true"
    with pytest.raises(ContractError, match="the hub endpoint must be a plain value"):
        validate_deployment(applied, [runtime()])  # said at kubectl apply already
    odd = {"container": {"env": [{"name": "HF_ENDPOINT", "value": "https://user:pw@hub?x=1"}]}}
    with pytest.raises(ContractError, match=r"must be an http\(s\) URL"):
        render(deployment(**odd))  # type: ignore[arg-type]


def test_the_root_fetcher_gets_the_hub_token_and_timeouts_by_name_and_nothing_else() -> None:
    """envFrom of the model container used to be copied whole into the root fetcher: an LD_PRELOAD of the
    tenant's ran there. Now only the token variables come from envFrom, as references to those keys."""
    container = {
        "env": [
            {"name": "LD_PRELOAD", "value": "/var/lib/hearth/models/x.so"},
            {"name": "HF_HUB_DOWNLOAD_TIMEOUT", "value": "60"},
            {"name": "HF_HOME", "value": "/tmp/elsewhere"},
            {"name": "PYTHONPATH", "value": "/x"},
        ],
        "envFrom": [{"secretRef": {"name": "everything"}}, {"configMapRef": {"name": "cfg"}, "prefix": "HF_"}],
    }
    fetch = containers(render(deployment(container=container)), "initContainers")["hearth-fetch"]
    assert "envFrom" not in fetch
    assert fetch["env"] == [
        {"name": "HF_TOKEN", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "TOKEN", "optional": True}}},
        {
            "name": "HUGGING_FACE_HUB_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "everything", "key": "HUGGING_FACE_HUB_TOKEN", "optional": True}},
        },
        {"name": "HF_HUB_DOWNLOAD_TIMEOUT", "value": "60"},
    ]


def test_hearths_pod_annotations_arriving_with_a_pod_are_dropped() -> None:
    """A tenant-set cache.hearth.dev/model marked any model in use on its node, so it was never evicted."""
    forged = deployment("hf://Qwen/Qwen3-8B")
    forged["spec"]["template"]["metadata"]["annotations"][CACHED_MODEL] = "huggingface/victim/model"
    assert render(forged)["metadata"]["annotations"][CACHED_MODEL] == KEY
    keep = deployment(None, container={"image": "my/server:1"})
    keep["spec"]["template"]["metadata"]["annotations"][CACHED_MODEL] = "huggingface/victim/model"
    assert CACHED_MODEL not in render(keep)["metadata"]["annotations"]


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


def test_a_modelscope_model_is_cached_from_its_own_hub_with_its_own_token() -> None:
    token = {"name": "MODELSCOPE_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "ms", "key": "t"}}}
    mirror = {"name": "MODELSCOPE_ENDPOINT", "value": "https://Mirror.example.cn/"}
    hf = {"name": "HF_TOKEN", "value": "not for this hub"}
    pod = render(deployment("modelscope://Qwen/Qwen3-8B", container={"env": [token, mirror, hf]}))
    key = f"modelscope/{hub_id('https://mirror.example.cn')}/Qwen/Qwen3-8B"
    assert pod["metadata"]["annotations"][CACHED_MODEL] == key
    model = containers(pod)["model"]
    assert model["args"][0] == f"/var/lib/hearth/models/{key}"
    assert not any(e["name"] == "VLLM_USE_MODELSCOPE" for e in model["env"])  # the runtime loads a folder
    fetch = containers(pod, "initContainers")["hearth-fetch"]
    assert "--endpoint=https://mirror.example.cn" in fetch["args"]
    assert '--credentials=Secret "ms" (key t, variable MODELSCOPE_API_TOKEN)' in fetch["args"]
    assert [e["name"] for e in fetch["env"]] == ["MODELSCOPE_API_TOKEN"]  # not the other hub's token
    bad = deployment("modelscope://Qwen/Qwen3-8B", container={"env": [{"name": "MODELSCOPE_ENDPOINT", "value": "x"}]})
    with pytest.raises(ContractError, match=r"env\[MODELSCOPE_ENDPOINT\]"):
        render(bad)


def test_a_claim_instead_of_a_host_path_and_the_refresh_rule_reach_the_pod() -> None:
    pod = render(deployment(), volume="PersistentVolumeClaim", maxAgeSeconds=86400)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["hearth-node-cache"] == {
        "name": "hearth-node-cache",
        "persistentVolumeClaim": {"claimName": "hearth-model-cache"},
    }
    assert not any("hostPath" in v for v in volumes.values())  # a Pod Security baseline namespace admits it
    assert "--max-age=86400" in containers(pod, "initContainers")["hearth-fetch"]["args"]


def test_the_admission_policy_admits_exactly_the_fetchers_variables_and_flags() -> None:
    from policies.modelcache import FETCHER_VARIABLES

    docs = list(yaml.safe_load_all((ROOT / "manifests" / "node-cache-policy.yaml").read_text()))
    (policy,) = [
        d for d in docs if d["metadata"]["name"] == "hearth-node-cache-fetcher" and d["kind"].endswith("Policy")
    ]
    rules = " ".join(v["expression"] for v in policy["spec"]["validations"])
    listed = re.search(r"e\.name in \[([^\]]*)\]", rules)
    assert listed is not None
    assert sorted(n.strip(" '") for n in listed.group(1).split(",")) == sorted(FETCHER_VARIABLES)
    fetch = containers(render(deployment(), maxAgeSeconds=600), "initContainers")["hearth-fetch"]
    for flag in fetch["args"][2:]:
        name = flag.partition("=")[0]
        assert f"a.startsWith('{name}=')" in rules or f"a == '{flag}'" in rules, flag


def test_hearth_cache_volume_binds_the_namespaces_claim_to_the_node_folder_and_keeps_it() -> None:
    from policies import local_cache_volumes

    storage_class, volume, claim = local_cache_volumes("ai", "/data/models", "10Gi")
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    assert volume["spec"]["local"] == {"path": "/data/models"}
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"  # the folder holds other namespaces' models
    assert (
        volume["spec"]["claimRef"]["namespace"] == "ai" and volume["spec"]["claimRef"]["name"] == "hearth-model-cache"
    )
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"] == "hearth-model-cache-ai"
    assert claim["metadata"]["namespace"] == "ai"
    assert claim["spec"]["storageClassName"] == volume["spec"]["storageClassName"] == storage_class["metadata"]["name"]
    for bad in ("AI", "a_b", "", "a.b"):
        with pytest.raises(ValueError, match="not a namespace name"):
            local_cache_volumes(bad)
    with pytest.raises(ValueError, match="absolute path"):
        local_cache_volumes("ai", "models")


def test_the_older_modelscope_domain_variable_still_names_the_hub() -> None:
    from policies.modelcache import endpoint_of

    domain = {"name": "MODELSCOPE_DOMAIN", "value": "mirror.example.cn"}
    endpoint = {"name": "MODELSCOPE_ENDPOINT", "value": "https://other.example.cn"}
    assert endpoint_of([domain], "c", "modelscope") == "https://mirror.example.cn"
    assert endpoint_of([endpoint, domain], "c", "modelscope") == "https://other.example.cn"  # the newer name wins
    assert endpoint_of([domain], "c", "huggingface") == "https://huggingface.co"  # not HF's
    with pytest.raises(ContractError, match=r"MODELSCOPE_DOMAIN"):
        endpoint_of([{"name": "MODELSCOPE_DOMAIN", "value": "a b"}], "c", "modelscope")
