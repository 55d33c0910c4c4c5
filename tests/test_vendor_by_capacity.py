"""Vendor by capacity, pure and in the webhook's admission core: a pod whose Deployment lists
`nvidia,ascend` is rendered for the first vendor with a free accelerator now, and a waiting pod is
replaced when another listed vendor has room (scaler.room.fallback). On a real cluster:
tests/e2e/test_packing.py."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import yaml

from devcluster.cluster import DEV_RUNTIMES
from devcluster.models import simulated_model
from policies import Capacity, PodSpec, RenderSettings, capacity, runtime_from_object, runtime_has_room, select_runtime
from scaler.room import fallback
from tests.support import admission_review, apiserver_pod
from webhook.admission import mutate_pod

RUNTIMES = [runtime_from_object(d) for d in yaml.safe_load_all(DEV_RUNTIMES.read_text()) if d]
GPU, NPU = "nvidia.com/gpu", "huawei.com/Ascend910"


def node(
    name: str, resources: dict[str, int], labels: dict[str, str], taints: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints or []},
        "status": {
            "allocatable": {k: str(v) for k, v in resources.items()},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def cluster(gpus_used: int, npus_used: int) -> Capacity:
    nodes = [
        node(
            "gpu-node-0",
            {GPU: 4},
            {"nvidia.com/gpu.present": "true"},
            [{"key": GPU, "value": "present", "effect": "NoSchedule"}],
        ),
        node("ascend-node-0", {NPU: 8}, {"accelerator": "huawei-Ascend910"}),
    ]
    pods = [
        {
            "metadata": {"name": f"p{i}", "namespace": "x"},
            "spec": {"nodeName": where, "containers": [{"resources": {"limits": {res: "1"}}}]},
            "status": {"phase": "Running"},
        }
        for i, (where, res) in enumerate([("gpu-node-0", GPU)] * gpus_used + [("ascend-node-0", NPU)] * npus_used)
    ]
    return capacity(nodes, pods)


def listing(vendors: str) -> dict[str, Any]:
    deployment = simulated_model("ai", "qwen")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    del annotations["hearth.dev/runtime"]
    annotations["hearth.dev/vendors"] = vendors
    return deployment


def test_the_first_listed_vendor_with_room_is_chosen_and_the_first_when_none_has() -> None:
    spec = PodSpec(model=None, vendors=("nvidia", "ascend"))
    template = listing("nvidia,ascend")["spec"]["template"]

    def choose(view: Capacity) -> str:
        return select_runtime(spec, RUNTIMES, has_room=lambda r: runtime_has_room(view, r, template, 1)).name

    assert choose(cluster(gpus_used=3, npus_used=0)) == "sim-nvidia"
    assert choose(cluster(gpus_used=4, npus_used=0)) == "sim-ascend"
    assert choose(cluster(gpus_used=4, npus_used=8)) == "sim-nvidia"  # none has room: the first, and room is made there
    assert select_runtime(spec, RUNTIMES).name == "sim-nvidia"  # without a view: as before


def test_the_node_selector_of_the_template_narrows_where_there_is_room() -> None:
    template = listing("nvidia,ascend")["spec"]["template"]
    template["spec"]["nodeSelector"] = {"zone": "b"}  # no node is in zone b
    assert not runtime_has_room(cluster(0, 0), RUNTIMES[0], template, 1)
    del template["spec"]["nodeSelector"]
    assert runtime_has_room(cluster(0, 0), RUNTIMES[0], template, 4)
    assert not runtime_has_room(cluster(0, 0), RUNTIMES[0], template, 5)


def render(view: Capacity | None, vendors: str) -> dict[str, Any]:
    pod = apiserver_pod(listing(vendors))
    review = admission_review(pod)
    answer = mutate_pod(review["request"], RUNTIMES, RenderSettings(), view)
    assert answer["response"]["allowed"], answer
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    return dict(jsonpatch.apply_patch(pod, patch))


def test_the_webhook_renders_a_pod_for_the_vendor_that_has_room() -> None:
    full_gpus = render(cluster(gpus_used=4, npus_used=0), "nvidia,ascend")
    assert full_gpus["metadata"]["labels"]["hearth.dev/runtime"] == "sim-ascend"
    assert full_gpus["spec"]["nodeSelector"] == {"accelerator": "huawei-Ascend910"}
    room = render(cluster(gpus_used=1, npus_used=0), "nvidia,ascend")
    assert room["metadata"]["labels"]["hearth.dev/runtime"] == "sim-nvidia"
    assert render(cluster(4, 0), "nvidia")["metadata"]["labels"]["hearth.dev/runtime"] == "sim-nvidia"  # one vendor
    assert render(None, "nvidia,ascend")["metadata"]["labels"]["hearth.dev/runtime"] == "sim-nvidia"  # view not synced


def test_a_waiting_pod_is_replaced_only_when_another_listed_vendor_has_room() -> None:
    deployment = listing("nvidia,ascend")
    waiting = {"metadata": {"labels": {"hearth.dev/runtime": "sim-nvidia"}}}
    chosen = fallback(cluster(gpus_used=4, npus_used=0), deployment, waiting, RUNTIMES)
    assert chosen is not None and chosen.name == "sim-ascend"
    assert fallback(cluster(gpus_used=4, npus_used=8), deployment, waiting, RUNTIMES) is None  # nowhere better
    assert fallback(cluster(gpus_used=3, npus_used=0), deployment, waiting, RUNTIMES) is None  # its own has room now
    pinned = simulated_model("ai", "qwen")  # hearth.dev/runtime: sim-nvidia
    assert fallback(cluster(gpus_used=4, npus_used=0), pinned, waiting, RUNTIMES) is None
    assert fallback(cluster(4, 0), listing("nvidia"), waiting, RUNTIMES) is None
