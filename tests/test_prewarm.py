"""Prewarm's pure parts (policies.prewarm) and the node agent's (nodecache.agent): which nodes, which Job,
which labels, which limits. The live behaviour is tests/e2e/test_model_cache.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from nodecache.agent import EventTail, in_use, label_patch, limits_of
from nodecache.store import Store
from policies import parse_scale
from policies.annotations import PREWARM_ALL, parse_pod
from policies.errors import Collector
from policies.modelcache import CACHED_MODEL, hub_id, node_label
from policies.prewarm import can_run, job_name, job_state, plan, prewarm_job
from policies.runtime import runtime_from_object
from tests.support import RUNTIMES

KEY = f"huggingface/{hub_id('https://huggingface.co')}/Qwen/Qwen3-8B"


def runtime() -> Any:
    return runtime_from_object(yaml.safe_load((RUNTIMES / "vllm-nvidia.yaml").read_text()))


def node(name: str, *, gpus: str = "4", ready: bool = True, warm: bool = False, **extra: Any) -> dict[str, Any]:
    labels = {"nvidia.com/gpu.present": "true", **extra.pop("labels", {})}
    if warm:
        labels[node_label(KEY)] = "true"
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}], **extra},
        "status": {
            "allocatable": {"nvidia.com/gpu": gpus},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_prewarm_is_true_false_or_a_count() -> None:
    assert parse_scale({"hearth.dev/prewarm": "true"}, Collector()).prewarm == PREWARM_ALL
    assert parse_scale({"hearth.dev/prewarm": "false"}, Collector()).prewarm == 0
    assert parse_scale({"hearth.dev/prewarm": "2"}, Collector()).prewarm == 2
    errors = Collector()
    assert parse_scale({"hearth.dev/prewarm": "yes"}, errors).prewarm == 0
    assert "hearth.dev/prewarm" in str(errors.problems[0])


def test_only_nodes_the_runtime_can_run_on_are_candidates() -> None:
    rt = runtime()
    assert can_run(rt, node("a"))
    assert not can_run(rt, node("b", gpus="0"))
    assert not can_run(rt, node("c", ready=False))
    assert not can_run(rt, node("d", unschedulable=True))
    other = node("e")
    other["metadata"]["labels"] = {}
    assert not can_run(rt, other)
    tainted = node("f")
    tainted["spec"]["taints"].append({"key": "dedicated", "value": "batch", "effect": "NoExecute"})
    assert not can_run(rt, tainted)


def test_warm_nodes_count_first_and_a_number_caps_the_total() -> None:
    nodes = [node("n3"), node("n1"), node("n2", warm=True), node("x", gpus="0")]
    two = plan(KEY, runtime(), nodes, 2)
    assert two.candidates == ("n1", "n2", "n3")
    assert two.targets == ("n2", "n1") and two.missing == ("n1",)
    assert two.summary() == "1/2"
    every = plan(KEY, runtime(), nodes, PREWARM_ALL)
    assert every.missing == ("n1", "n3") and every.summary() == "1/3"


def test_the_job_fetches_with_the_model_containers_credentials_onto_one_node() -> None:
    deployment = {
        "metadata": {"name": "qwen", "namespace": "ai", "uid": "u-1"},
        "spec": {
            "template": {
                "metadata": {"annotations": {"hearth.dev/model": "hf://Qwen/Qwen3-8B"}},
                "spec": {
                    "serviceAccountName": "models",
                    "containers": [
                        {
                            "name": "model",
                            "env": [
                                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                                {"name": "OTHER", "value": "x"},
                            ],
                        }
                    ],
                },
            }
        },
    }
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
    spec = parse_pod(annotations, Collector())
    assert spec is not None
    job = prewarm_job(deployment, runtime(), spec, "gpu-node-7", "registry/hearth:1")
    assert job is not None
    assert job["metadata"]["name"] == job_name("qwen", "gpu-node-7") and len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    pod = job["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert job["metadata"]["annotations"][CACHED_MODEL] == KEY
    assert "annotations" not in pod["metadata"]  # only pods the webhook rendered say what they load
    assert "--endpoint=https://huggingface.co" in container["args"]
    assert container["image"] == "registry/hearth:1"
    assert [e["name"] for e in container["env"]] == ["HF_TOKEN"]
    assert '--credentials=Secret "hf" (key token, variable HF_TOKEN)' in container["args"]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["gpu-node-7"]
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["spec"]["serviceAccountName"] == "models"
    assert job["spec"]["backoffLimit"] > 0 and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job_state(job) == "fetching"
    assert job_state({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "failed"


def test_the_agent_takes_the_smallest_size_of_the_runtimes_that_share_its_folder() -> None:
    def rt(name: str, path: str, size: str) -> dict[str, Any]:
        body: dict[str, Any] = yaml.safe_load((RUNTIMES / "vllm-nvidia.yaml").read_text())
        body["metadata"]["name"] = name
        body["spec"]["cache"] = {"hostPath": path, "size": size, "highWatermarkPercent": 85}
        return body

    runtimes = [rt("a", "/var/lib/hearth/models", "200Gi"), rt("b", "/var/lib/hearth/models/", "100Gi")]
    runtimes += [rt("c", "/elsewhere", "1Gi"), {"metadata": {"name": "broken"}, "spec": {}}]
    limits = limits_of(runtimes, "/var/lib/hearth/models")
    assert limits is not None and (limits.capacity, limits.high, limits.runtime) == (100 * 2**30, 85, "b")
    assert limits_of(runtimes, "/nowhere") is None


def test_models_in_use_are_those_of_the_rendered_pods_still_running_on_the_node() -> None:
    """A pod without the opt-in label never met the webhook: its cache.hearth.dev/model is a tenant's own,
    which used to keep any model from eviction."""
    rendered = {"hearth.dev/enabled": "true"}

    def pod(key: str | None, phase: str, labels: dict[str, str] = rendered) -> dict[str, Any]:
        return {
            "metadata": {"labels": labels, "annotations": {CACHED_MODEL: key} if key else {}},
            "status": {"phase": phase},
        }

    pods = [
        pod("huggingface/a/b", "Running"),
        pod("huggingface/c/d", "Pending"),
        pod("huggingface/e/f", "Succeeded"),
        pod(None, "Running"),
        pod("huggingface/victim/model", "Running", {}),
    ]
    assert in_use(pods) == {"huggingface/a/b", "huggingface/c/d"}


def test_node_labels_follow_the_cache_and_leave_other_labels_alone() -> None:
    stale = node_label("huggingface/old/model")
    current = {"kubernetes.io/hostname": "n1", stale: "true", node_label(KEY): "true"}
    patch = label_patch(current, {}, [KEY, "huggingface/new/model"])
    assert patch["metadata"]["labels"] == {node_label("huggingface/new/model"): "true", stale: None}
    summary = json.loads(patch["metadata"]["annotations"]["cache.hearth.dev/models"])
    assert sorted(summary.values()) == sorted(["huggingface/new/model", KEY])
    applied = {k: v for k, v in {**current, **patch["metadata"]["labels"]}.items() if v is not None}
    annotations = patch["metadata"]["annotations"]
    assert label_patch(applied, annotations, [KEY, "huggingface/new/model"]) == {}  # nothing more to do


def test_the_event_tail_reads_each_line_once_and_starts_over_after_rotation(tmp_path: Path) -> None:
    store = Store(tmp_path)
    tail = EventTail(store.meta / "events.jsonl")
    assert tail.new_events() == []
    store.record({"key": "k", "outcome": "hit"})
    store.record({"key": "k", "outcome": "download", "bytes": 5})
    assert [e["outcome"] for e in tail.new_events()] == ["hit", "download"]
    assert tail.new_events() == []
    (store.meta / "events.jsonl").replace(store.meta / "events.jsonl.1")
    store.record({"key": "k", "outcome": "repair"})
    assert [e["outcome"] for e in tail.new_events()] == ["repair"]
