"""InferenceRuntime (serving.hearth.dev/v1alpha1): an admin's description of one backend.

The pydantic model is the validator; `manifests/crd-inferenceruntime.yaml` mirrors its rules as a
structural schema so that kube-apiserver refuses the same objects even when the webhook is down.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from policies.errors import ContractError, Problem

GROUP = "serving.hearth.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceRuntime"

# The template language: `{{ name }}` and nothing else: no expressions, no filters, no code.
TEMPLATE_VARIABLES = ("model.path", "model.name", "model.uri", "port", "accelerators")
_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_RESOURCE = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$"
_ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

Port = Annotated[int, Field(ge=1, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EnvVar(_Strict):
    name: str = Field(pattern=_ENV_NAME, max_length=253, description="The variable's name.")
    value: str = Field("", description="Its value (template variables are not filled in here).")


class Container(_Strict):
    image: str = Field(
        min_length=1,
        max_length=512,
        pattern=r"^\S+$",
        description="The runtime's image, e.g. vllm/vllm-openai with a tag.",
    )
    command: list[str] | None = Field(
        None, description="The entrypoint, when the image's is not the server (template variables allowed)."
    )
    args: list[str] = Field(
        default_factory=list,
        description="The server's arguments. Template variables: {{ model.path }}, {{ model.name }}, {{ model.uri }}, "
        "{{ port }}, {{ accelerators }}; one of them must pass the model.",
    )
    env: list[EnvVar] = Field(default_factory=list, description="Environment variables of the model container.")
    port: Port = Field(8000, description="The port the server listens on ({{ port }}); the sidecar fronts it.")
    resources: dict[str, dict[str, str]] | None = Field(
        None,
        description="Requests and limits of the model container besides the accelerator (e.g. limits: {memory: 64Gi}).",
    )

    @field_validator("args", "command")
    @classmethod
    def _known_variables(cls, values: list[str] | None) -> list[str] | None:
        for value in values or []:
            unknown = template_errors(value)
            if unknown:
                raise ValueError(unknown)
        return values


class Toleration(_Strict):
    key: str | None = Field(None, description="The taint's key, e.g. nvidia.com/gpu.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default Equal).")
    value: str | None = Field(None, description="The taint's value, with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="The taint effect tolerated (empty: every effect)."
    )
    toleration_seconds: int | None = Field(
        default=None, alias="tolerationSeconds", description="With NoExecute: how long the pod stays after the taint."
    )


class HostMount(_Strict):
    path: str = Field(pattern=r"^/[^\s]*$", max_length=4096, description="The path on the node.")
    mount_path: str | None = Field(
        default=None,
        alias="mountPath",
        pattern=r"^/[^\s]*$",
        description="Where it appears in the container (default: the same path).",
    )
    type: Literal["", "Directory", "File", "DirectoryOrCreate", "FileOrCreate", "Socket", "CharDevice"] = Field(
        "", description="The hostPath type the kubelet checks before mounting (empty: no check)."
    )


class Accelerator(_Strict):
    resource: str = Field(
        pattern=_RESOURCE,
        max_length=253,
        description="The extended resource a pod asks for, e.g. nvidia.com/gpu or huawei.com/Ascend910.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, alias="nodeSelector", description="Node labels the model pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints of accelerator nodes that the model pods tolerate."
    )
    host_mounts: list[HostMount] = Field(
        default_factory=list,
        alias="hostMounts",
        description="Host paths mounted read-only into the model container, e.g. the Ascend driver.",
    )

    @field_validator("resource")
    @classmethod
    def _extended(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError("must be an extended resource with a domain, such as nvidia.com/gpu")
        return value


class Probe(_Strict):
    period_seconds: int = Field(default=10, ge=1, le=300, alias="periodSeconds", description="Seconds between probes.")
    failure_threshold: int = Field(
        default=3, ge=1, le=10_000, alias="failureThreshold", description="Failures in a row before the probe fails."
    )
    timeout_seconds: int = Field(
        default=5, ge=1, le=300, alias="timeoutSeconds", description="Seconds one probe may take."
    )


class Probes(_Strict):
    path: str = Field(
        default="/health",
        pattern=r"^/\S*$",
        description="The runtime's health path, answering 200 once the model is loaded.",
    )
    # 10 s x 180 = 30 minutes for a large model to download and load before the pod is killed.
    startup: Probe = Field(
        Probe(period_seconds=10, failure_threshold=180),
        description="While the model loads (default 10 s x 180: half an hour) before the pod is restarted.",
    )
    readiness: Probe = Field(
        Probe(period_seconds=5, failure_threshold=3), description="When the pod may take requests."
    )
    liveness: Probe = Field(
        Probe(period_seconds=10, failure_threshold=6), description="When a loaded runtime is restarted."
    )


class Lifecycle(_Strict):
    drain_timeout_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        alias="drainTimeoutSeconds",
        description="Longest wait for open streams when a pod goes away.",
    )
    shutdown_seconds: int = Field(
        default=30,
        ge=0,
        le=600,
        alias="shutdownSeconds",
        description="Time the runtime gets after draining to shut down before SIGKILL.",
    )


class Metrics(_Strict):
    port: Port | None = Field(None, description="The port of the runtime's metrics (default: its serving port).")
    path: str = Field(default="/metrics", pattern=r"^/\S*$", description="The path of the runtime's metrics.")


class NodeCache(_Strict):
    host_path: str = Field(
        default="/var/lib/hearth/models",
        alias="hostPath",
        pattern=r"^/[^\s]*$",
        max_length=4096,
        description="The folder on each node that holds the models (a local disk); one per node, shared by "
        "every pod and model there.",
    )
    size: str = Field(
        default="50Gi",
        pattern=r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
        description="How much of the node's disk the cache may use: above highWatermarkPercent of it, the node "
        "agent removes the least recently used models that no pod uses.",
    )
    high_watermark_percent: int = Field(
        default=90, ge=1, le=100, alias="highWatermarkPercent", description="Eviction starts above this share."
    )
    low_watermark_percent: int = Field(
        default=80, ge=0, le=100, alias="lowWatermarkPercent", description="Eviction stops at or below this share."
    )
    max_age_seconds: int | None = Field(
        default=None,
        ge=60,
        le=31_536_000,
        alias="maxAgeSeconds",
        description="How long a cached model is served without asking its hub again. Unset: for ever (a warm "
        "start asks nothing, also with the hub unreachable). Set: a start on a node whose copy was last checked "
        "longer ago asks the hub for the revision's listing (one request); when the revision moved, the new one "
        "is fetched (files whose hash did not change are kept), else the copy is served and counted as checked. "
        "A hub that cannot be reached then does not stop the start: the cached copy is served.",
    )
    volume: Literal["HostPath", "PersistentVolumeClaim"] = Field(
        default="HostPath",
        description="How pods reach the node's folder. HostPath: a hostPath volume (the model's namespace must "
        "allow host paths: Pod Security privileged). PersistentVolumeClaim: the claim hearth-model-cache of the "
        "pod's own namespace, bound to a local PersistentVolume whose path is hostPath on every node (made by "
        "`hearth cache volume`), so the namespace can stay at Pod Security baseline.",
    )

    @model_validator(mode="after")
    def _watermarks(self) -> NodeCache:
        if self.low_watermark_percent > self.high_watermark_percent:
            raise ValueError("lowWatermarkPercent must not exceed highWatermarkPercent")
        return self


class RuntimeSpec(_Strict):
    """An admin's profile of one serving backend: the model container and the accelerator it runs on,
    which the webhook renders into the pods of every Deployment that chooses it."""

    vendor: str = Field(
        pattern=_NAME,
        max_length=63,
        description="Accelerator vendor, e.g. nvidia or ascend (open to more); Deployments choose vendors with "
        "hearth.dev/vendors.",
    )
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        description="Higher wins among runtimes of one vendor; an equal-priority tie is an error.",
    )
    container: Container = Field(description="The model container rendered into every pod that uses this runtime.")
    accelerator: Accelerator = Field(description="The accelerator it uses and how its pods reach nodes that have it.")
    probes: Probes = Field(Probes(), description="The runtime's health path and the kubelet's probes of it.")
    lifecycle: Lifecycle = Field(Lifecycle(), description="How a pod that goes away drains and stops.")
    metrics: Metrics = Field(Metrics(), description="Where the runtime exports its Prometheus metrics.")
    cache: NodeCache | None = Field(
        None,
        description="A node-local model cache: hub models (hf://, modelscope://) are fetched once per node into this "
        "host folder, "
        "verified, and mounted read-only, so a cold start on a warm node downloads nothing. Unset: each pod "
        "downloads into an emptyDir.",
    )

    @model_validator(mode="after")
    def _model_is_loaded(self) -> RuntimeSpec:
        joined = " ".join((self.container.command or []) + self.container.args)
        if "model.path" not in joined and "model.uri" not in joined:
            raise ValueError("container.args must pass the model, e.g. --model={{ model.path }}")
        return self


class InferenceRuntime(_Strict):
    """One runtime as the webhook keeps it: its name, version stamp and validated spec."""

    name: str = Field(pattern=_NAME, max_length=253)
    spec: RuntimeSpec
    generation: int | None = None
    resource_version: str | None = None

    @property
    def stamp(self) -> str:
        """Identifies the version of this runtime that a pod was rendered from."""
        if self.resource_version:
            return f"rv{self.resource_version}"
        return f"gen{self.generation}" if self.generation is not None else "file"


def _placeholders(text: str) -> tuple[list[tuple[int, int, str]], bool]:
    r"""The `{{ name }}` placeholders of `text` as (start, end, name), and whether any `{{` or `}}` is left
    unpaired. One pass, linear in the text: each `}}` is paired with the last `{{` before it (the name
    between them holds no brace), as a regular expression would, without its backtracking (a pattern
    with two `\s*` around a lazy group took minutes on `{{` and a few thousand spaces)."""
    found: list[tuple[int, int, str]] = []
    unpaired = False
    position = 0
    while True:
        end = text.find("}}", position)
        if end < 0:
            unpaired = unpaired or "{{" in text[position:]
            return found, unpaired
        start = text.rfind("{{", position, end)
        inner = text[start + 2 : end] if start >= 0 else ""
        if start < 0 or "{" in inner or "}" in inner:
            unpaired = True
        else:
            unpaired = unpaired or "{{" in text[position:start]
            found.append((start, end + 2, inner.strip()))
        position = end + 2


def template_errors(text: str) -> str | None:
    """Unknown `{{ var }}` names are refused when the runtime is applied, not when a pod starts."""
    placeholders, unpaired = _placeholders(text)
    unknown = [name for _, _, name in placeholders if name not in TEMPLATE_VARIABLES]
    if unknown:
        return f"unknown template variable {{{{ {unknown[0]} }}}}; known: " + ", ".join(TEMPLATE_VARIABLES)
    if unpaired:
        return "unbalanced '{{' or '}}'; write variables as {{ model.path }}"
    return None


def fill_template(text: str, variables: Mapping[str, str]) -> str:
    placeholders, _ = _placeholders(text)
    parts, position = [], 0
    for start, end, name in placeholders:
        parts += [text[position:start], variables[name]]
        position = end
    return "".join([*parts, text[position:]])


def runtime_from_object(obj: Mapping[str, Any]) -> InferenceRuntime:
    """Validate an InferenceRuntime object (a dict as kubectl or the apiserver holds it)."""
    where = "InferenceRuntime"
    if not isinstance(obj, Mapping):
        raise ContractError([Problem(where, type(obj).__name__, "must be an object", "send a YAML/JSON mapping")])
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        got = f"{obj.get('apiVersion')}/{obj.get('kind')}"
        raise ContractError(
            [Problem(f"{where} apiVersion/kind", got, f"must be {API_VERSION}/{KIND}", "fix apiVersion and kind")]
        )
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        meta = {}
    name = meta.get("name")
    where = f'InferenceRuntime "{name}"'
    generation = meta.get("generation")
    try:
        return InferenceRuntime.model_validate(
            {
                "name": name,
                "spec": obj.get("spec"),
                "generation": generation if isinstance(generation, int) else None,
                "resource_version": meta.get("resourceVersion"),
            }
        )
    except ValidationError as exc:
        raise ContractError([problem_of(where, err) for err in exc.errors()]) from None


def valid_runtimes(objects: Iterable[Mapping[str, Any]]) -> list[InferenceRuntime]:
    """The runtimes among `objects` that validate; the others are left out (the webhook refuses and reports
    them, so a reader of the cluster's runtimes need not)."""
    found = []
    for obj in objects:
        try:
            found.append(runtime_from_object(obj))
        except ContractError:
            continue
    return found


def problem_of(where: str, err: Any, join: str = " ") -> Problem:
    """One pydantic error as a Problem at `where` + `join` + the field path as written (aliases)."""
    loc = ".".join(str(part) for part in err["loc"])
    value = err.get("input")
    shown = None if err["type"] == "missing" or isinstance(value, dict | list) else str(value)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "is missing (required)"
    fix = "add it" if err["type"] == "missing" else "correct the value"
    if err["type"] == "extra_forbidden":
        fix = "remove the field or fix its spelling"
    return Problem(f"{where}{join}{loc}" if loc else where, shown, msg, fix)


def field_descriptions(model: type[BaseModel] = RuntimeSpec, prefix: str = "spec") -> dict[str, str]:
    """Each field's description by its path in the object as written (aliases, `[]` for list items), for
    the CRD's descriptions: written once here, beside the rules they describe."""
    found: dict[str, str] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}.{field.alias or name}"
        inner = _model_of(field.annotation)
        if inner is not None:
            listed = typing.get_origin(field.annotation) is list
            found.update(
                {k: v for k, v in field_descriptions(inner, path + ("[]" if listed else "")).items() if k != path}
            )
        if field.description:
            found[path] = field.description
    return found


def _model_of(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
