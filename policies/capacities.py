"""Accelerator capacity, pure: nodes and pods in, what each node has, what is taken and by whom out.

An accelerator is an extended resource (a name with a domain outside kubernetes.io, such as nvidia.com/gpu
or huawei.com/Ascend910). A pod holds what its containers request from the moment it is bound to a node
until it is gone (a terminating pod still holds its devices: they are counted as `freeing`). A pod fits a
node when the node is Ready and not cordoned, carries the labels of the pod's nodeSelector and every
NoSchedule/NoExecute taint is tolerated; affinity is not modelled (the scheduler still has the last word).

The scaler (making room, vendor fallback), the webhook (vendor by capacity) and `hearth status --capacity`
read the same view; the components keep only the slim objects `slim_node` and `slim_pod` return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.deployment import deployment_name_of
from policies.objects import model_key
from policies.runtime import InferenceRuntime

Obj = Mapping[str, Any]
RESERVED_DOMAINS = ("kubernetes.io", "k8s.io")


def is_accelerator(resource: str) -> bool:
    """An extended resource: `domain/name` outside the kubernetes.io domains (hugepages, cpu, memory and
    ephemeral-storage have no domain)."""
    domain, _, name = resource.partition("/")
    if not name or not domain or resource.startswith("requests."):
        return False
    return not any(domain == d or domain.endswith("." + d) for d in RESERVED_DOMAINS)


def _count(value: Any) -> int:
    """An extended resource's quantity: a whole number (Kubernetes refuses fractions of them)."""
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def accelerators_of(resources: Obj | None) -> dict[str, int]:
    """Accelerators a container asks for: its requests, else its limits (for extended resources the
    request defaults to the limit and must equal it)."""
    resources = resources or {}
    asked = dict(resources.get("limits") or {}) | dict(resources.get("requests") or {})
    return {str(k): _count(v) for k, v in asked.items() if is_accelerator(str(k)) and _count(v) > 0}


def pod_needs(pod: Obj) -> dict[str, int]:
    """The pod's effective accelerator request: the larger of its containers' sum and any init container's."""
    spec = pod.get("spec") or {}
    needs: dict[str, int] = {}
    for container in spec.get("containers") or []:
        for resource, count in accelerators_of(container.get("resources")).items():
            needs[resource] = needs.get(resource, 0) + count
    for container in spec.get("initContainers") or []:
        for resource, count in accelerators_of(container.get("resources")).items():
            needs[resource] = max(needs.get(resource, 0), count)
    return needs


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class NodeRoom:
    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    schedulable: bool  # Ready and not cordoned
    allocatable: Mapping[str, int]  # accelerators only


@dataclass(frozen=True)
class Holding:
    """A pod's claim on accelerators."""

    pod: str  # namespace/name
    node: str | None  # None: not bound yet
    needs: Mapping[str, int]
    terminating: bool
    model: str | None  # namespace/deployment of a Hearth model pod, None for anything else


def node_room(node: Obj) -> NodeRoom:
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
        for t in spec.get("taints") or []
    )
    allocatable = {str(k): _count(v) for k, v in (status.get("allocatable") or {}).items() if is_accelerator(str(k))}
    return NodeRoom(
        str(meta.get("name", "")),
        {str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        taints,
        ready and not spec.get("unschedulable"),
        allocatable,
    )


def holding_of(pod: Obj) -> Holding | None:
    """What the pod holds, or None when it asks for no accelerator or has finished (its devices are free)."""
    needs = pod_needs(pod)
    status = pod.get("status") or {}
    if not needs or status.get("phase") in ("Succeeded", "Failed"):
        return None
    meta = pod.get("metadata") or {}
    namespace = str(meta.get("namespace", ""))
    deployment = deployment_name_of(pod) if (meta.get("labels") or {}).get("hearth.dev/enabled") == "true" else None
    return Holding(
        model_key(namespace, str(meta.get("name", ""))),
        (pod.get("spec") or {}).get("nodeName") or None,
        needs,
        bool(meta.get("deletionTimestamp")),
        model_key(namespace, deployment) if deployment else None,
    )


def tolerates(tolerations: Iterable[Obj], taint: Taint) -> bool:
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.effect:
            continue
        key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
        if not key and operator == "Exists":
            return True  # tolerates everything
        if key != taint.key:
            continue
        if operator == "Exists" or str(toleration.get("value") or "") == taint.value:
            return True
    return False


def fits(node: NodeRoom, selector: Mapping[str, str], tolerations: Iterable[Obj]) -> bool:
    """Whether a pod with this nodeSelector and these tolerations may be placed on the node at all."""
    if not node.schedulable or any(node.labels.get(k) != v for k, v in selector.items()):
        return False
    tolerations = list(tolerations)
    return all(tolerates(tolerations, t) for t in node.taints if t.effect in ("NoSchedule", "NoExecute"))


@dataclass
class Capacity:
    """Per node and accelerator: what is allocatable, taken (by bound pods, terminating ones included) and
    freeing (taken by terminating pods), and who holds it."""

    nodes: dict[str, NodeRoom] = field(default_factory=dict)
    taken: dict[tuple[str, str], int] = field(default_factory=dict)
    freeing: dict[tuple[str, str], int] = field(default_factory=dict)
    holders: dict[tuple[str, str], list[Holding]] = field(default_factory=dict)

    def free(self, node: str, resource: str) -> int:
        room = self.nodes.get(node)
        allocatable = room.allocatable.get(resource, 0) if room else 0
        return max(0, allocatable - self.taken.get((node, resource), 0))

    def bound_pods(self, terminating: bool = True) -> set[str]:
        """Every pod (namespace/name) this view shows bound to a node and holding accelerators there; without
        `terminating`, only those not going."""
        return {h.pod for holders in self.holders.values() for h in holders if terminating or not h.terminating}

    def pools(self) -> list[tuple[str, str]]:
        """(node, resource) of every accelerator the nodes offer, sorted."""
        return sorted((n.name, r) for n in self.nodes.values() for r in n.allocatable)

    def room_for(self, needs: Mapping[str, int], selector: Mapping[str, str], tolerations: Iterable[Obj]) -> list[str]:
        """Nodes the pod fits on that have every accelerator it needs free now."""
        tolerations = list(tolerations)
        return [
            node.name
            for node in sorted(self.nodes.values(), key=lambda n: n.name)
            if fits(node, selector, tolerations) and all(self.free(node.name, r) >= n for r, n in needs.items())
        ]


def capacity(nodes: Iterable[Obj], pods: Iterable[Obj]) -> Capacity:
    view = Capacity()
    for node in nodes:
        room = node_room(node)
        if room.name and room.allocatable:
            view.nodes[room.name] = room
    for pod in pods:
        holding = holding_of(pod)
        if holding is None or holding.node is None:
            continue
        for resource, count in holding.needs.items():
            where = (holding.node, resource)
            view.taken[where] = view.taken.get(where, 0) + count
            view.holders.setdefault(where, []).append(holding)
            if holding.terminating:
                view.freeing[where] = view.freeing.get(where, 0) + count
    return view


def slim_node(node: Obj) -> dict[str, Any]:
    """What the capacity view keeps of a Node (an informer's transform: a node's images and volumes are
    most of its size)."""
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    return {
        "metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
        "spec": {"taints": spec.get("taints") or [], "unschedulable": bool(spec.get("unschedulable"))},
        "status": {
            "allocatable": {k: v for k, v in (status.get("allocatable") or {}).items() if is_accelerator(str(k))},
            "conditions": [
                {"type": c.get("type"), "status": c.get("status")}
                for c in status.get("conditions") or []
                if c.get("type") == "Ready"
            ],
        },
    }


def slim_pod(pod: Obj) -> dict[str, Any]:
    """What the capacity view keeps of a Pod: for one that holds no accelerator, its name only."""
    meta = pod.get("metadata") or {}
    slim: dict[str, Any] = {"metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")}}
    needs = pod_needs(pod)
    if not needs:
        return slim
    labels = meta.get("labels") or {}
    slim["metadata"] |= {
        "labels": {k: v for k, v in labels.items() if k in ("hearth.dev/enabled", "pod-template-hash")},
        "ownerReferences": [{"kind": o.get("kind"), "name": o.get("name")} for o in meta.get("ownerReferences") or []],
        "deletionTimestamp": meta.get("deletionTimestamp"),
    }
    spec = pod.get("spec") or {}
    slim["spec"] = {
        "nodeName": spec.get("nodeName"),
        "containers": [{"resources": {"requests": needs}}],
    }
    slim["status"] = {"phase": (pod.get("status") or {}).get("phase")}
    return slim


def runtime_has_room(view: Capacity, runtime: InferenceRuntime, pod: Obj, count: int) -> bool:
    """Whether a pod rendered from `runtime` (its accelerator's nodeSelector and tolerations added to the
    pod's own) would find `count` of its accelerator free on some node now."""
    spec = pod.get("spec") or {}
    accelerator = runtime.spec.accelerator
    selector = {str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()} | accelerator.node_selector
    tolerations = [
        *(spec.get("tolerations") or []),
        *(t.model_dump(by_alias=True, exclude_none=True) for t in accelerator.tolerations),
    ]
    return bool(view.room_for({accelerator.resource: count}, selector, tolerations))
