"""`kubectl get ... -o json` as REST paths: the tests and the soak poll the dev cluster several times a second,
and a kubectl process costs about 80 ms of CPU each time (3,200 of them in one end-to-end run: an eighth of
two busy cores). The common forms are read over one kept-alive connection instead; anything else goes to
kubectl as before. Pure: arguments in, paths out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Resource:
    group_version: str  # "v1", "apps/v1"
    plural: str
    kind: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        where = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{where}/{self.plural}" + (f"/{name}" if name else "")


_KNOWN = (
    (("pods", "pod", "po"), Resource("v1", "pods", "Pod")),
    (("events", "event", "ev"), Resource("v1", "events", "Event")),
    (("nodes", "node", "no"), Resource("v1", "nodes", "Node", namespaced=False)),
    (("configmaps", "configmap", "cm"), Resource("v1", "configmaps", "ConfigMap")),
    (("secrets", "secret"), Resource("v1", "secrets", "Secret")),
    (("services", "service", "svc"), Resource("v1", "services", "Service")),
    (
        ("persistentvolumeclaims", "persistentvolumeclaim", "pvc"),
        Resource("v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ),
    (("namespaces", "namespace", "ns"), Resource("v1", "namespaces", "Namespace", namespaced=False)),
    (("deployments", "deployment", "deploy"), Resource("apps/v1", "deployments", "Deployment")),
    (("daemonsets", "daemonset", "ds"), Resource("apps/v1", "daemonsets", "DaemonSet")),
    (("replicasets", "replicaset", "rs"), Resource("apps/v1", "replicasets", "ReplicaSet")),
    (("jobs", "job"), Resource("batch/v1", "jobs", "Job")),
    (("llmservices", "llmservice", "llm"), Resource("serving.hearth.dev/v1alpha1", "llmservices", "LLMService")),
    (
        ("inferenceruntimes", "inferenceruntime", "irt"),
        Resource("serving.hearth.dev/v1alpha1", "inferenceruntimes", "InferenceRuntime", namespaced=False),
    ),
)
RESOURCES: dict[str, Resource] = {alias: resource for aliases, resource in _KNOWN for alias in aliases}
_FLAGS = {"-n": "namespace", "--namespace": "namespace", "-l": "labelSelector", "--field-selector": "fieldSelector"}


@dataclass(frozen=True)
class Get:
    """One `kubectl get`: the resources (several for `deploy,daemonset`), a name or a list's filters."""

    resources: tuple[Resource, ...]
    namespace: str | None
    name: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    def paths(self) -> list[str]:
        return [resource.path(self.namespace, self.name) for resource in self.resources]


def parse_get(args: tuple[str, ...]) -> Get | None:
    """The arguments after `kubectl get` (without `-o json`) as a Get, or None for a form not handled here
    (kubectl then answers): flags other than -n, -A, -l and --field-selector, a name with several kinds."""
    words: list[str] = []
    options: dict[str, str] = {}
    every_namespace = False
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word in ("-A", "--all-namespaces"):
            every_namespace = True
        elif word in _FLAGS and rest:
            options[_FLAGS[word]] = rest.pop(0)
        elif word.startswith("-"):
            return None
        else:
            words.append(word)
    if not 1 <= len(words) <= 2 or any(kind not in RESOURCES for kind in words[0].split(",")):
        return None
    resources = tuple(RESOURCES[kind] for kind in words[0].split(","))
    name = words[1] if len(words) == 2 else None
    if name and (len(resources) > 1 or every_namespace or options.keys() - {"namespace"}):
        return None
    namespace = None if every_namespace else options.pop("namespace", "default")  # kubectl's default context
    return Get(resources, namespace, name, options)


def as_kubectl_prints(get: Get, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """What `kubectl get -o json` prints for these answers: the object itself for a name, else a List whose
    items carry their kind and apiVersion (a list from the API leaves them out); managedFields left out."""
    if get.name:
        return _without_managed_fields(answers[0])
    items = [
        {"apiVersion": resource.group_version, "kind": resource.kind, **_without_managed_fields(item)}
        for resource, answer in zip(get.resources, answers, strict=True)
        for item in answer.get("items") or []
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


def _without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": metadata}
