"""Accelerator capacity (policies.capacities) and the choice of replicas to retire (scaler.packing), pure:
nodes, pods and candidates in, free counts and retirements out. The leader acting on them in process is
in tests/test_room.py; on a real cluster in tests/e2e/test_packing.py."""

from __future__ import annotations

from typing import Any

from policies.capacities import capacity, fits, holding_of, is_accelerator, node_room, pod_needs, slim_node, slim_pod
from scaler.packing import Candidate, Rules, Waiter, plan

GPU = "nvidia.com/gpu"
NPU = "huawei.com/Ascend910"
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
RULES = Rules(grace=30, residency=120, swaps_per_minute=6)


def node(name: str, resources: dict[str, int], *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}, "annotations": {"big": "x" * 100}},
        "spec": spec,
        "status": {
            "allocatable": {"cpu": "8", "memory": "64Gi", **{k: str(v) for k, v in resources.items()}},
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "images": [{"names": ["a"], "sizeBytes": 1}],
        },
    }


def pod(name: str, on: str | None, needs: dict[str, int], *, model: str | None = None, **meta: Any) -> dict[str, Any]:
    labels = {"hearth.dev/enabled": "true", "pod-template-hash": "h"} if model else {}
    owners = [{"kind": "ReplicaSet", "name": f"{model}-h"}] if model else []
    return {
        "metadata": {"name": name, "namespace": "ai", "labels": labels, "ownerReferences": owners, **meta},
        "spec": {
            "nodeName": on,
            "containers": [
                {"name": "sidecar", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "model", "resources": {"limits": {k: str(v) for k, v in needs.items()}}},
            ],
        },
        "status": {"phase": "Running" if on else "Pending"},
    }


def candidate(name: str, model: str, *, idle: float = 600, up: float = 600, priority: int = 0, spare: int = 1,
              node_name: str = "gpu-0", gpus: int = 1) -> Candidate:  # fmt: skip
    return Candidate(f"ai/{name}", f"ai/{model}", node_name, {GPU: gpus}, priority, idle, up, spare)


def waiter(model: str, *, gpus: int = 1, priority: int = 0) -> Waiter:
    return Waiter(f"ai/{model}-pod", f"ai/{model}", priority, {GPU: gpus}, {}, (GPU_TOLERATION,))


def full_pool(gpus: int = 4, held: int = 4) -> Any:
    nodes = [node("gpu-0", {GPU: gpus}, taints=[GPU_TAINT])]
    pods = [pod(f"m{i}-pod", "gpu-0", {GPU: 1}, model=f"m{i}") for i in range(held)]
    return capacity(nodes, pods)


def test_an_accelerator_is_an_extended_resource_outside_the_kubernetes_domains() -> None:
    assert is_accelerator(GPU) and is_accelerator(NPU) and is_accelerator("example.com/fpga")
    for plain in (
        "cpu",
        "memory",
        "hugepages-2Mi",
        "ephemeral-storage",
        "kubernetes.io/batch-cpu",
        "requests.nvidia.com/gpu",
    ):
        assert not is_accelerator(plain), plain


def test_a_pod_needs_its_containers_sum_or_its_largest_init_container() -> None:
    p = pod("p", None, {GPU: 2})
    p["spec"]["containers"].append({"name": "b", "resources": {"requests": {GPU: "1"}, "limits": {GPU: "1"}}})
    assert pod_needs(p) == {GPU: 3}
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"limits": {GPU: "4"}}}]
    assert pod_needs(p) == {GPU: 4}


def test_capacity_counts_bound_pods_terminating_ones_as_freeing_and_finished_ones_not_at_all() -> None:
    nodes = [node("gpu-0", {GPU: 4}), node("cpu-0", {})]
    pods = [
        pod("a", "gpu-0", {GPU: 1}, model="qwen"),
        pod("b", "gpu-0", {GPU: 2}, deletionTimestamp="2026-12-06T00:00:00Z"),
        pod("c", None, {GPU: 1}, model="glm"),  # pending: holds nothing yet
        pod("d", "gpu-0", {}),  # no accelerator
    ]
    done = pod("e", "gpu-0", {GPU: 1})
    done["status"]["phase"] = "Succeeded"
    view = capacity(nodes, [*pods, done])
    assert list(view.nodes) == ["gpu-0"]  # a node without accelerators is no pool
    assert view.free("gpu-0", GPU) == 1 and view.freeing == {("gpu-0", GPU): 2}
    holders = view.holders[("gpu-0", GPU)]
    assert [(h.pod, h.model) for h in holders] == [("ai/a", "ai/qwen"), ("ai/b", None)]


def test_the_slim_objects_keep_exactly_what_the_view_reads() -> None:
    full_nodes = [node("gpu-0", {GPU: 4}, taints=[GPU_TAINT], labels={"x": "y"})]
    full_pods = [pod("a", "gpu-0", {GPU: 1}, model="qwen", deletionTimestamp="t"), pod("z", "gpu-0", {})]
    assert capacity(full_nodes, full_pods) == capacity(map(slim_node, full_nodes), map(slim_pod, full_pods))
    assert "images" not in slim_node(full_nodes[0])["status"]
    assert slim_pod(full_pods[1]) == {"metadata": {"name": "z", "namespace": "ai"}}


def test_a_pod_fits_a_ready_uncordoned_node_with_its_labels_whose_taints_it_tolerates() -> None:
    gpu = node_room(node("gpu-0", {GPU: 4}, taints=[GPU_TAINT], labels={"gpu": "a100"}))
    assert fits(gpu, {"gpu": "a100"}, [GPU_TOLERATION])
    assert not fits(gpu, {"gpu": "h100"}, [GPU_TOLERATION])
    assert not fits(gpu, {}, [])  # the taint is not tolerated
    assert fits(gpu, {}, [{"operator": "Exists"}])  # tolerates everything
    assert fits(gpu, {}, [{"key": GPU, "value": "present"}])  # Equal, any effect
    assert not fits(gpu, {}, [{"key": GPU, "value": "absent"}])
    cordoned = node_room(node("gpu-1", {GPU: 4}, unschedulable=True))
    assert not fits(cordoned, {}, [])
    not_ready = node("gpu-2", {GPU: 4})
    not_ready["status"]["conditions"][1]["status"] = "False"
    assert not fits(node_room(not_ready), {}, [])


def test_a_full_pool_retires_the_least_recently_used_idle_replica() -> None:
    found = [
        candidate("m0-pod", "m0", idle=100),
        candidate("m1-pod", "m1", idle=900),
        candidate("m2-pod", "m2", idle=300),
    ]
    result = plan(full_pool(), [waiter("fifth")], found, RULES, {})
    assert [(r.victim.pod, r.node) for r in result.retire] == [("ai/m1-pod", "gpu-0")]
    assert result.stuck == [] and result.placed == []


def test_free_room_or_room_on_its_way_retires_nothing() -> None:
    assert plan(full_pool(held=3), [waiter("fifth")], [candidate("m0-pod", "m0")], RULES, {}).placed
    incoming = {("gpu-0", GPU): 1}  # a replica retired by the last pass, not yet shown terminating
    result = plan(full_pool(), [waiter("fifth")], [candidate("m0-pod", "m0")], RULES, {}, incoming)
    assert result.retire == [] and [w.model for w in result.placed] == ["ai/fifth"]


def test_two_waiters_share_one_freed_accelerator_fairly_by_priority() -> None:
    """One candidate, two waiters: the higher priority gets the retirement, the other waits with a reason."""
    found = [candidate("m0-pod", "m0")]
    result = plan(full_pool(), [waiter("low"), waiter("high", priority=5)], found, RULES, {})
    assert [r.waiter.model for r in result.retire] == ["ai/high"]
    assert [s.waiter.model for s in result.stuck] == ["ai/low"]


def test_what_is_never_retired() -> None:
    cases = {
        "used within the last 30s": candidate("m0-pod", "m0", idle=5),
        "minimum residency": candidate("m0-pod", "m0", up=30),
        "higher priority 9": candidate("m0-pod", "m0", priority=9),
        "min-replicas": candidate("m0-pod", "m0", spare=0),
    }
    for why, found in cases.items():
        result = plan(full_pool(), [waiter("fifth", priority=1)], [found], RULES, {})
        assert result.retire == [], why
        assert why in result.stuck[0].why, (why, result.stuck[0].why)


def test_a_model_yields_to_equal_or_higher_priority_never_lower() -> None:
    low = candidate("m0-pod", "m0", priority=0)
    high = candidate("m1-pod", "m1", priority=10, idle=10_000)
    result = plan(full_pool(), [waiter("mid", priority=5)], [low, high], RULES, {})
    assert [r.victim.model for r in result.retire] == ["ai/m0"]
    result = plan(full_pool(), [waiter("mid", priority=5)], [high], RULES, {})
    assert result.retire == [] and "higher priority 10" in result.stuck[0].why


def test_a_pod_needing_two_takes_the_node_needing_fewest_retirements() -> None:
    nodes = [node("gpu-0", {GPU: 2}), node("gpu-1", {GPU: 2})]
    pods = [
        pod("a", "gpu-0", {GPU: 1}, model="a"),
        pod("b", "gpu-0", {GPU: 1}, model="b"),
        pod("c", "gpu-1", {GPU: 2}, model="c"),
    ]
    found = [
        candidate("a", "a", node_name="gpu-0", idle=1000),
        candidate("b", "b", node_name="gpu-0", idle=1000),
        candidate("c", "c", node_name="gpu-1", gpus=2, idle=100),
    ]
    w = Waiter("ai/big-pod", "ai/big", 0, {GPU: 2}, {}, ())
    result = plan(capacity(nodes, pods), [w], found, RULES, {})
    assert [(r.victim.pod, r.node) for r in result.retire] == [("ai/c", "gpu-1")]


def test_victims_are_only_on_nodes_the_waiter_fits() -> None:
    nodes = [node("gpu-0", {GPU: 1}, labels={"zone": "a"}), node("gpu-1", {GPU: 1}, labels={"zone": "b"})]
    pods = [pod("a", "gpu-0", {GPU: 1}, model="a"), pod("b", "gpu-1", {GPU: 1}, model="b")]
    found = [candidate("a", "a", node_name="gpu-0", idle=5000), candidate("b", "b", node_name="gpu-1")]
    w = Waiter("ai/w-pod", "ai/w", 0, {GPU: 1}, {"zone": "b"}, ())
    result = plan(capacity(nodes, pods), [w], found, RULES, {})
    assert [r.victim.pod for r in result.retire] == ["ai/b"]


def test_a_model_gives_no_more_replicas_than_it_can_spare() -> None:
    nodes = [node("gpu-0", {GPU: 2})]
    pods = [pod("a1", "gpu-0", {GPU: 1}, model="a"), pod("a2", "gpu-0", {GPU: 1}, model="a")]
    found = [candidate("a1", "a", spare=1), candidate("a2", "a", spare=1)]
    w = Waiter("ai/w-pod", "ai/w", 0, {GPU: 2}, {}, ())
    result = plan(capacity(nodes, pods), [w], found, RULES, {})
    assert result.retire == [] and "min-replicas" in result.stuck[0].why


def test_the_swap_budget_bounds_retirements_per_resource_per_minute() -> None:
    found = [candidate("m0-pod", "m0")]
    assert plan(full_pool(), [waiter("fifth")], found, RULES, {GPU: 5}).retire
    result = plan(full_pool(), [waiter("fifth")], found, RULES, {GPU: 6})
    assert result.retire == [] and "swap budget" in result.stuck[0].why


def test_a_waiter_that_fits_no_node_says_so() -> None:
    w = Waiter("ai/w-pod", "ai/w", 0, {NPU: 1}, {}, ())
    result = plan(full_pool(), [w], [], RULES, {})
    assert "no Ready node" in result.stuck[0].why


def test_holding_of_names_the_model_of_a_hearth_pod_only() -> None:
    held = holding_of(pod("a", "gpu-0", {GPU: 1}, model="qwen"))
    assert held is not None and held.model == "ai/qwen"
    other = holding_of(pod("b", "gpu-0", {GPU: 1}))
    assert other is not None and other.model is None
    assert holding_of(pod("c", "gpu-0", {})) is None
