"""What an LLMService shows: Hearth's status of its Deployment, mirrored (pure), and the CRD that carries it.

The phase is the scaler's (policies.phases) once the Deployment exists; before that, or when it cannot be
made, the LLMService says why with one of its own phases: Pending (the Deployment is being made),
Conflict (a Deployment of that name belongs to someone else; Hearth never takes it over) and Invalid (the
spec breaks the contract; the webhook refuses such objects, so this is seen only when it was down).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from policies.annotations import PHASE_LABEL, parse_pod
from policies.crdschema import model_schema
from policies.errors import Collector, ContractError
from policies.llmservice import KIND, PLURAL, LLMServiceSpec, pod_annotations
from policies.phases import PHASES, READY, SCALED_TO_ZERO, SCALING, failure_of, status_of
from policies.runtime import GROUP, VERSION, InferenceRuntime
from policies.selection import select_runtime

PENDING, CONFLICT, INVALID = "Pending", "Conflict", "Invalid"
LLM_PHASES = (PENDING, *PHASES, CONFLICT, INVALID)
HEALTHY = (SCALED_TO_ZERO, READY, SCALING)  # the service is as asked: Ready=True


class _Status(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


class Condition(_Status):
    type: str = Field(description="Ready: the Deployment is made and healthy (at zero too); Serving: pods answer.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="The phase, in one word.")
    message: str = Field("", description="What Hearth says about it.")
    last_transition_time: str = Field(description="When status last changed.")
    observed_generation: int = Field(0, description="The generation of the spec this condition is about.")


class LLMServiceStatus(_Status):
    phase: str = Field(description="Pending, ScaledToZero, Activating, Ready, Scaling, Degraded, Conflict or Invalid.")
    runtime: str = Field("", description="The InferenceRuntime serving it (at zero: the one a pod would get now).")
    replicas: int = Field(0, description="Replicas the scaler wants (the Deployment's spec.replicas).")
    ready_replicas: int = Field(0, description="Replicas answering requests.")
    demand: int = Field(0, description="Requests held or in flight, summed over the front doors.")
    deployment: str = Field("", description="The Deployment it compiles into (same name and namespace).")
    message: str = Field("", description="Why it is not serving, when it cannot: the failure in Hearth's words.")
    observed_generation: int = Field(0, description="The generation of the spec last compiled into the Deployment.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready and Serving.")


def predicted_runtime(spec: LLMServiceSpec, runtimes: Sequence[InferenceRuntime]) -> str:
    """The runtime a pod would be rendered from now (without capacity): what RUNTIME shows at zero."""
    errors = Collector()
    pod = parse_pod(pod_annotations(spec), errors)
    if pod is None or errors.problems:
        return ""
    try:
        return select_runtime(pod, runtimes).name
    except ContractError:
        return ""


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def mirror(
    generation: int,
    deployment: Mapping[str, Any] | None,
    predicted: str,
    problem: str | None = None,
    conflict: str | None = None,
) -> dict[str, Any]:
    """The LLMService's status (without conditions' times) from its Deployment as the API returns it."""
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "runtime": predicted,
        "replicas": 0,
        "readyReplicas": 0,
        "demand": 0,
        "deployment": "",
        "message": "",
    }
    if conflict is not None:
        return {**status, "phase": CONFLICT, "message": conflict}
    if problem is not None:
        return {**status, "phase": INVALID, "message": problem}
    if deployment is None:
        return {**status, "phase": PENDING, "message": "making its Deployment"}
    meta = deployment.get("metadata") or {}
    ours = status_of(deployment)
    found = deployment.get("status") or {}
    return {
        **status,
        "phase": (meta.get("labels") or {}).get(PHASE_LABEL) or PENDING,
        "runtime": ours.get("runtime") or predicted,
        "replicas": _int((deployment.get("spec") or {}).get("replicas") or 0),
        "readyReplicas": _int(ours.get("ready") or found.get("readyReplicas") or 0),
        "demand": _int(ours.get("demand") or 0),
        "deployment": str(meta.get("name") or ""),
        "message": failure_of(deployment) or "",
    }


def with_conditions(status: dict[str, Any], before: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """Ready and Serving from the phase; a condition's transition time moves only when its status does."""
    old = {c.get("type"): c for c in (before or {}).get("conditions") or [] if isinstance(c, Mapping)}
    phase = str(status["phase"])
    wanted = {
        "Ready": phase in HEALTHY,
        "Serving": status.get("readyReplicas", 0) > 0,
    }
    conditions = []
    for kind, truth in wanted.items():
        value = "True" if truth else "False"
        previous = old.get(kind) or {}
        since = previous.get("lastTransitionTime") if previous.get("status") == value else None
        conditions.append(
            {
                "type": kind,
                "status": value,
                "reason": phase,
                "message": status.get("message") or phase,
                "lastTransitionTime": since or now,
                "observedGeneration": status["observedGeneration"],
            }
        )
    return {**status, "conditions": conditions}


def same(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    """Whether writing `b` over `a` would change anything but times (no write is then needed)."""

    def strip(s: Mapping[str, Any] | None) -> dict[str, Any]:
        s = dict(s or {})
        s["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in s.get("conditions") or []]
        return s

    return strip(a) == strip(b)


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition, written to manifests/crd-llmservice.yaml (tests/test_llmservice.py)."""
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Runtime", "type": "string", "jsonPath": ".status.runtime"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas", "priority": 1},
        {"name": "Demand", "type": "integer", "jsonPath": ".status.demand", "priority": 1},
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.source.uri", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    spec = model_schema(LLMServiceSpec)
    spec["description"] = " ".join((LLMServiceSpec.__doc__ or "").split())
    status = model_schema(LLMServiceStatus)
    status["description"] = "What Hearth observes of it, written by the scaler (the controller of LLMServices)."
    status.pop("required", None)  # written piecewise by the controller; the apiserver checks nothing here
    status["properties"]["conditions"]["items"]["required"] = ["type", "status"]
    status["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    status["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this representation of an object."},
            "kind": {"type": "string", "description": "The REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "hearth",
                "app.kubernetes.io/component": "api",
                "app.kubernetes.io/part-of": "hearth",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["llm", "llms"],
                "categories": ["hearth"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
