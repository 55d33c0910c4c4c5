"""LLMService (serving.hearth.dev/v1alpha1): one short object per model, compiled into an annotated Deployment.

The announcement's interface, offered beside the annotated Deployment with one engine underneath: an
LLMService is never served by itself. `compile_deployment` turns it into the Deployment a user could have
written (the same `hearth.dev/` keys), so the webhook, scaler, front door and sidecar work unchanged, and
`validate_llmservice` refuses what that Deployment's validation would refuse, naming the LLMService's own
fields. The pydantic model is the validator and the source of the CRD's schema (policies.crdschema).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from policies.annotations import ENABLED_LABEL, PREFIX, TEMPLATE_WHERE
from policies.deployment import Verdict, validate_deployment
from policies.errors import ContractError, Problem
from policies.patch import json_copy
from policies.runtime import API_VERSION, GROUP, InferenceRuntime, problem_of

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL"]

KIND = "LLMService"
PLURAL = "llmservices"
OWNER_LABEL = f"{GROUP}/llmservice"  # on the Deployment and its pods: which LLMService they come from
MODEL_CONTAINER = "model"
_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DURATION = r"^([0-9]+(h|m|s|ms))+$"  # the exact rules: policies.values.duration_seconds
_QUANTITY = r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"

# Where each annotation of the contract lives in an LLMService: the Deployment's problems are reported at
# these paths. `container` and `port` are keep-mode keys: an LLMService always renders its model container.
SCALE_FIELDS = {
    "min-replicas": "spec.scaling.min",
    "max-replicas": "spec.scaling.max",
    "target": "spec.scaling.target",
    "scale-down-delay": "spec.scaling.scaleDownDelay",
    "priority": "spec.scaling.priority",
    "prewarm": "spec.scaling.prewarm",
    "anticipate": "spec.scaling.anticipate",
    "cold-start": "spec.coldStart.mode",
    "activation-timeout": "spec.coldStart.activationTimeout",
    "queue-size": "spec.coldStart.queueSize",
    "heartbeat-interval": "spec.coldStart.heartbeatInterval",
    "json-keepalive": "spec.coldStart.jsonKeepalive",
    "cold-start-progress": "spec.coldStart.progress",
}
POD_FIELDS = {
    "model": "spec.model.source.uri",
    "served-name": "spec.model.servedNames",
    "vendors": "spec.runtime.selector.vendor",
    "runtime": "spec.runtime.name",
    "extra-args": "spec.runtime.args",
    "accelerators": "spec.resources.accelerators",
    "cache-size": "spec.resources.cacheSize",
    "shm-size": "spec.resources.shmSize",
    "drain-timeout": "spec.scaling.drainTimeout",
}
_FIELDS = {**SCALE_FIELDS, **POD_FIELDS}
NOT_OFFERED = {"container": "the model container is always named model", "port": "keep mode only"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, alias_generator=to_camel)


def _duration(description: str) -> Any:
    return Field(None, pattern=_DURATION, max_length=32, description=description)


class Source(_Strict):
    uri: str = Field(
        min_length=1,
        max_length=2048,
        description="Where the model comes from: hf://org/name[@revision], huggingface://, modelscope://org/name, "
        "pvc://claim[/sub] or s3://bucket/prefix.",
    )


class ModelSpec(_Strict):
    source: Source = Field(description="The model's weights.")
    served_names: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Model names clients may use (default: the LLMService's name); the first is the one the "
        "server serves.",
    )

    @field_validator("served_names")
    @classmethod
    def _no_commas(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name.strip() or "," in name or len(name) > 253:
                raise ValueError(f"{name!r} is not a model name (non-empty, no commas, at most 253 characters)")
        return names


class Selector(_Strict):
    vendor: list[str] = Field(
        min_length=1,
        max_length=8,
        description="Accelerator vendors in order of preference, e.g. [nvidia, ascend]: the first with a "
        "runtime (and, when several are listed, a free accelerator) is used.",
    )

    @field_validator("vendor")
    @classmethod
    def _names(cls, vendors: list[str]) -> list[str]:
        for vendor in vendors:
            if not re.fullmatch(_NAME, vendor) or len(vendor) > 63:
                raise ValueError(f"{vendor!r} is not a vendor name such as nvidia or ascend")
        if len(set(vendors)) != len(vendors):
            raise ValueError("vendors must be distinct")
        return vendors


class RuntimeChoice(_Strict):
    selector: Selector | None = Field(None, description="Choose the runtime by vendor (the default: any vendor).")
    name: str | None = Field(
        None, pattern=_NAME, max_length=253, description="Pin one InferenceRuntime by name, instead of a selector."
    )
    args: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Extra arguments appended to the runtime's, e.g. [--max-model-len=8192]; not the flags Hearth "
        "owns (--port, --host, --uds, --served-model-name, --model).",
    )

    @model_validator(mode="after")
    def _one_way(self) -> RuntimeChoice:
        if self.selector is not None and self.name is not None:
            raise ValueError("give either selector or name, not both")
        return self


class Resources(_Strict):
    accelerators: int = Field(1, ge=1, le=64, description="Accelerators per pod (the runtime's resource).")
    cache_size: str | None = Field(
        None,
        pattern=_QUANTITY,
        description="Size limit of the emptyDir that caches hub downloads (runtimes without a node cache).",
    )
    shm_size: str | None = Field(None, pattern=_QUANTITY, description="Size of the in-memory /dev/shm (default 2Gi).")


class Scaling(_Strict):
    min: int = Field(0, ge=0, le=1000, description="Fewest replicas; 0 allows scale-to-zero (the default).")
    max: int = Field(1, ge=1, le=1000, description="Most replicas the scaler may ask for (default 1).")
    metric: Literal["queueDepth"] = Field(
        "queueDepth", description="What the scaler counts: queueDepth (requests waiting + in flight), the only one."
    )
    target: int = Field(
        10, ge=1, le=100_000, description="Queue depth per replica that triggers scale-out (default 10)."
    )
    scale_down_delay: str | None = _duration(
        "How long demand must stay lower before one step down or to zero (default 5m)."
    )
    drain_timeout: str | None = _duration(
        "Longest wait for open streams to finish when a pod goes away (default: the runtime's)."
    )
    priority: int = Field(
        0,
        ge=0,
        le=1000,
        description="0 to 1000: when accelerators run out, a waking model may retire idle replicas of models of "
        "the same or lower priority, never of a higher one (at most the namespace's hearth.dev/max-priority "
        "label, a cluster admin's).",
    )
    prewarm: Annotated[int, Strict()] | Literal["all"] | None = Field(
        None,
        description="Fetch the model into the node cache while it sits at zero: a number of nodes, or all "
        "(every node its runtime can run on). Needs an hf:// or modelscope:// model and a runtime with a node cache.",
    )

    anticipate: bool | None = Field(
        None,
        description="true: wake the model shortly before the hours of the week in which its use usually begins "
        "(learned from its use; a few times a day at most).",
    )

    @field_validator("prewarm")
    @classmethod
    def _nodes(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 0 <= value <= 1000:
            raise ValueError("must be a number of nodes from 0 to 1000, or all")
        return value

    @model_validator(mode="after")
    def _order(self) -> Scaling:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be at least min ({self.min})")
        return self


class ColdStart(_Strict):
    mode: Literal["keepalive", "reject"] = Field(
        "keepalive", description="keepalive holds requests while the model starts; reject answers 503 at once."
    )
    progress: bool | None = Field(
        None,
        description="true: held streaming chat requests are told how the start goes, as reasoning_content deltas "
        "that chat UIs show as thinking (off by default: API clients see SSE comments only).",
    )
    activation_timeout: str | None = _duration("How long a request is held waiting for a ready pod (default 10m).")
    queue_size: int | None = Field(
        None,
        ge=0,
        le=100_000,
        description="Requests held while the model has no ready pod; beyond it: 429 (default 100).",
    )
    heartbeat_interval: str | None = _duration("Interval of SSE comment heartbeats to held streams (default 10s).")
    json_keepalive: bool | None = Field(
        None,
        description="true: a held non-streaming request gets a 200 at once and a space every heartbeat, so proxies "
        "with idle timeouts keep it (errors then come as a 200 with an error body).",
    )


class LLMServiceSpec(_Strict):
    """One model served with scale-to-zero: compiled by Hearth into an annotated Deployment of the same
    name and namespace, whose pods the webhook renders from an InferenceRuntime."""

    model: ModelSpec = Field(description="The model to serve.")
    runtime: RuntimeChoice = Field(RuntimeChoice(), description="Which InferenceRuntime serves it.")
    resources: Resources = Field(Resources(), description="What each replica gets.")
    scaling: Scaling = Field(Scaling(), description="How the scaler sizes it: 0 -> 1 -> N -> 0 on queue depth.")
    cold_start: ColdStart = Field(ColdStart(), description="What the front door does while the model starts from zero.")
    template: dict[str, Any] | None = Field(
        None,
        description="A pod template merged into every pod (metadata.labels/annotations, spec: env, envFrom, "
        "resources and volumeMounts of the container named model, nodeSelector, tolerations, volumes, "
        "imagePullSecrets, ...); its hearth.dev/ annotations are the fields above.",
    )


def parse_spec(obj: Mapping[str, Any]) -> LLMServiceSpec:
    """The LLMService's spec, validated (ContractError naming `spec.…` paths)."""
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        got = f"{obj.get('apiVersion')}/{obj.get('kind')}"
        raise ContractError([Problem("apiVersion/kind", got, f"must be {API_VERSION}/{KIND}", "fix them")])
    try:
        return LLMServiceSpec.model_validate(obj.get("spec"))
    except ValidationError as exc:
        raise ContractError([problem_of("spec", err, ".") for err in exc.errors()]) from None


def _identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("name") or ""), str(meta.get("namespace") or "")


def scale_annotations(spec: LLMServiceSpec) -> dict[str, str]:
    """The Deployment-metadata keys (editing them never restarts a pod): only what the user set, so that
    Hearth's defaults stay Hearth's."""
    scaling, cold = spec.scaling, spec.cold_start
    raw: dict[str, object] = {
        "min-replicas": scaling.min,
        "max-replicas": scaling.max,
        "target": scaling.target if "target" in scaling.model_fields_set else None,
        "scale-down-delay": scaling.scale_down_delay,
        "priority": scaling.priority if "priority" in scaling.model_fields_set else None,
        "prewarm": {"all": "true", None: None}.get(scaling.prewarm, scaling.prewarm),  # type: ignore[arg-type]
        "anticipate": None if scaling.anticipate is None else str(scaling.anticipate).lower(),
        "cold-start": cold.mode if "mode" in cold.model_fields_set else None,
        "activation-timeout": cold.activation_timeout,
        "queue-size": cold.queue_size,
        "heartbeat-interval": cold.heartbeat_interval,
        "json-keepalive": None if cold.json_keepalive is None else str(cold.json_keepalive).lower(),
        "cold-start-progress": None if cold.progress is None else str(cold.progress).lower(),
    }
    return {PREFIX + key: str(value) for key, value in raw.items() if value is not None}


def pod_annotations(spec: LLMServiceSpec) -> dict[str, str]:
    """The pod-template keys (editing them rolls the pods out)."""
    runtime, resources = spec.runtime, spec.resources
    raw: dict[str, str | None] = {
        "model": spec.model.source.uri,
        "served-name": ",".join(spec.model.served_names) or None,
        "vendors": ",".join(runtime.selector.vendor) if runtime.selector else None,
        "runtime": runtime.name,
        "extra-args": shlex.join(runtime.args) if runtime.args else None,
        "accelerators": str(resources.accelerators),
        "cache-size": resources.cache_size,
        "shm-size": resources.shm_size,
        "drain-timeout": spec.scaling.drain_timeout,
    }
    return {PREFIX + key: value for key, value in raw.items() if value is not None}


def _template_problems(template: Mapping[str, Any]) -> list[Problem]:
    found = []
    meta = template.get("metadata") or {}
    for key in sorted((meta.get("annotations") or {}) if isinstance(meta, Mapping) else {}):
        if str(key).startswith(PREFIX):
            found.append(
                Problem(
                    f'spec.template.metadata.annotations["{key}"]',
                    None,
                    "is Hearth's key, which an LLMService sets from its fields",
                    f"use the field {_FIELDS.get(str(key)[len(PREFIX) :], 'for it in spec')} instead",
                )
            )
    for key in (meta.get("labels") or {}) if isinstance(meta, Mapping) else {}:
        if key in (OWNER_LABEL, ENABLED_LABEL):
            found.append(Problem(f'spec.template.metadata.labels["{key}"]', None, "is set by Hearth", "remove it"))
    return found


def compile_deployment(obj: Mapping[str, Any], spec: LLMServiceSpec | None = None) -> dict[str, Any]:
    """The annotated Deployment an LLMService becomes (no `spec.replicas`: the scaler owns it), owned by the
    LLMService (the garbage collector removes it with its owner)."""
    spec = spec or parse_spec(obj)
    name, namespace = _identity(obj)
    meta = obj.get("metadata") or {}
    template = json_copy(dict(spec.template or {}))
    template_meta = template.setdefault("metadata", {})
    pod_spec = template.setdefault("spec", {})
    containers = pod_spec.setdefault("containers", [])
    if not any(isinstance(c, Mapping) and c.get("name") == MODEL_CONTAINER for c in containers):
        containers.insert(0, {"name": MODEL_CONTAINER})
    selector = {OWNER_LABEL: name}
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **selector, ENABLED_LABEL: "true"}
    template_meta["annotations"] = {**(template_meta.get("annotations") or {}), **pod_annotations(spec)}
    owner = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": meta.get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }
    deployment_meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {ENABLED_LABEL: "true", **selector, "app.kubernetes.io/managed-by": "hearth"},
        "annotations": scale_annotations(spec),
    }
    if meta.get("uid"):  # a stored LLMService (a file being previewed has none)
        deployment_meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": deployment_meta,
        "spec": {"selector": {"matchLabels": selector}, "template": template},
    }


def _translated(problem: Problem) -> Problem:
    """A problem of the compiled Deployment, at the LLMService field it came from."""
    for scope, fields in (("metadata.annotations", SCALE_FIELDS), (TEMPLATE_WHERE, POD_FIELDS)):
        for key, path in fields.items():
            at = f'{scope}["{PREFIX}{key}"]'
            if problem.where == at:
                fix = problem.fix.replace(PREFIX + key, path)
                return Problem(path, problem.value, problem.allowed.replace(PREFIX, ""), fix)
    return problem  # spec.template.… paths are the same in both objects


def validate_llmservice(obj: Mapping[str, Any], runtimes: Sequence[InferenceRuntime] | None = None) -> Verdict:
    """Every problem of an LLMService (ContractError naming its own field paths), or the verdict of the
    Deployment it compiles into (its warnings)."""
    spec = parse_spec(obj)
    problems = _template_problems(spec.template or {})
    name, _ = _identity(obj)
    if not name or len(name) > 63:
        problems.append(Problem("metadata.name", name, "must be at most 63 characters (a label value)", "shorten"))
    if problems:
        raise ContractError(problems)
    try:
        return validate_deployment(compile_deployment(obj, spec), runtimes)
    except ContractError as exc:
        raise ContractError([_translated(p) for p in exc.problems]) from None
