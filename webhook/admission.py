"""The admission core: an AdmissionReview dict in, an AdmissionReview dict out. It knows nothing of HTTP.

A body that is not a well-formed AdmissionReview raises `MalformedReview` (the server answers HTTP 400);
an object that breaks the contract is a well-formed answer with `allowed: false` and a precise message.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from policies import (
    ENABLED_LABEL,
    LLMSERVICE_KIND,
    Capacity,
    ContractError,
    InferenceRuntime,
    RenderSettings,
    claimant_of,
    diff,
    render_for_pod,
    runtime_from_object,
    runtime_has_room,
    squatting_warnings,
    validate_deployment,
    validate_llmservice,
    with_scaler_defaults,
)

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
Review = dict[str, Any]
Handler = Callable[[Mapping[str, Any], Sequence[InferenceRuntime], RenderSettings], Review]


class MalformedReview(ValueError):
    """The request body is not an AdmissionReview we can answer (HTTP 400, not a denial)."""


def parse_review(body: bytes) -> tuple[str, Mapping[str, Any]]:
    """Return (apiVersion, request) of an AdmissionReview body, or raise MalformedReview."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise MalformedReview("body is nested too deeply") from None
        raise MalformedReview(f"body is not JSON: {exc}") from None
    if not isinstance(review, dict):
        raise MalformedReview("body must be a JSON object (an AdmissionReview)")
    api_version = review.get("apiVersion")
    if api_version not in API_VERSIONS or review.get("kind") != "AdmissionReview":
        raise MalformedReview(f"expected kind AdmissionReview of {' or '.join(API_VERSIONS)}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("AdmissionReview request has no uid")
    if not isinstance(request.get("object"), dict) and request.get("operation") != "DELETE":
        raise MalformedReview("AdmissionReview request has no object")
    return str(api_version), request


# Bounds on what a review answers, whatever the object held: the apiserver copies the message into the
# user's error and an Event, and prints every warning at `kubectl apply`.
MAX_MESSAGE = 4096
MAX_WARNING = 512
MAX_WARNINGS = 10


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 14] + " ...(truncated)"


def answer(
    api_version: str,
    uid: str,
    *,
    allowed: bool,
    message: str | None = None,
    code: int = 400,
    patch: list[dict[str, Any]] | None = None,
    warnings: Sequence[str] = (),
) -> Review:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": code, "message": _bounded(message or "denied", MAX_MESSAGE), "reason": "Invalid"}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
    if warnings:
        shown = [_bounded(w, MAX_WARNING) for w in warnings[:MAX_WARNINGS]]
        if len(warnings) > MAX_WARNINGS:
            shown.append(f"and {len(warnings) - MAX_WARNINGS} more warnings")
        response["warnings"] = shown
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def review(body: bytes, handler: Handler, runtimes: Sequence[InferenceRuntime], settings: RenderSettings) -> Review:
    api_version, request = parse_review(body)
    try:
        result = handler(request, runtimes, settings)
    except (TypeError, AttributeError, KeyError, ValueError, IndexError, RecursionError) as exc:
        # A well-formed review of a malformed object (a string where a list belongs): deny, naming it.
        message = f"hearth: the object is malformed ({type(exc).__name__}: {exc})"
        result = answer(api_version, str(request["uid"]), allowed=False, message=message)
    result["apiVersion"] = api_version
    return result


def _is_kind(request: Mapping[str, Any], group: str, kind: str) -> bool:
    gvk = request.get("kind")
    return isinstance(gvk, Mapping) and gvk.get("group", "") == group and gvk.get("kind") == kind


def _opted_in(request: Mapping[str, Any], group: str, kind: str, operations: tuple[str, ...]) -> dict[str, Any] | None:
    """The request's object when it is an opted-in object of this kind and operation, else None."""
    obj = request.get("object")
    if request.get("operation") not in operations or not isinstance(obj, dict) or not _is_kind(request, group, kind):
        return None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if not isinstance(labels, Mapping) or labels.get(ENABLED_LABEL) != "true":
        return None
    return obj


def _has_room(capacity: Capacity, pod: Mapping[str, Any]) -> Callable[[InferenceRuntime, int], bool]:
    return lambda runtime, count: runtime_has_room(capacity, runtime, pod, count)


def mutate_pod(
    request: Mapping[str, Any],
    runtimes: Sequence[InferenceRuntime],
    settings: RenderSettings,
    capacity: Capacity | None = None,
) -> Review:
    """Render an opted-in Pod at CREATE; anything else passes untouched. With the cluster's `capacity`,
    the vendor is the first listed one with a free accelerator for the pod (policies.selection)."""
    uid = str(request["uid"])
    pod = _opted_in(request, "", "Pod", ("CREATE",))
    if pod is None:
        return answer(API_VERSIONS[0], uid, allowed=True)
    meta = pod.get("metadata")
    if isinstance(meta, dict):  # the request is ours (parsed from this body): no copy needed
        meta.pop("managedFields", None)
    try:
        rendered = render_for_pod(pod, runtimes, settings, None if capacity is None else _has_room(capacity, pod))
    except ContractError as exc:
        return answer(API_VERSIONS[0], uid, allowed=False, message=f"hearth could not render this pod: {exc.message}")
    return answer(API_VERSIONS[0], uid, allowed=True, patch=diff(pod, rendered))


def mutate_deployment(
    request: Mapping[str, Any], runtimes: Sequence[InferenceRuntime], settings: RenderSettings
) -> Review:
    """Placeholder image and initial replicas for an opted-in Deployment (see with_scaler_defaults)."""
    uid = str(request["uid"])
    obj = _opted_in(request, "apps", "Deployment", ("CREATE", "UPDATE"))
    if obj is None:
        return answer(API_VERSIONS[0], uid, allowed=True)
    patch = diff(obj, with_scaler_defaults(obj, creating=request.get("operation") == "CREATE"))
    return answer(API_VERSIONS[0], uid, allowed=True, patch=patch)


def check_deployment(
    request: Mapping[str, Any],
    runtimes: Sequence[InferenceRuntime],
    settings: RenderSettings,
    recorded_names: Mapping[str, str] | None = None,
) -> Review:
    """Validate an opted-in Deployment; warn when a plain name it answers to is held by another model
    (`recorded_names`, policies.names), since its clients must then write namespace/name."""
    uid = str(request["uid"])
    obj = _opted_in(request, "apps", "Deployment", ("CREATE", "UPDATE"))
    if obj is None:
        return answer(API_VERSIONS[0], uid, allowed=True)
    try:
        verdict = validate_deployment(obj, runtimes)
    except ContractError as exc:
        return answer(API_VERSIONS[0], uid, allowed=False, message=f"hearth: {exc.message}")
    taken = squatting_warnings(claimant_of(obj), recorded_names or {})
    return answer(API_VERSIONS[0], uid, allowed=True, warnings=[*taken, *verdict.warnings])


def check_runtime(request: Mapping[str, Any], runtimes: Sequence[InferenceRuntime], settings: RenderSettings) -> Review:
    uid = str(request["uid"])
    obj = request.get("object")
    if request.get("operation") not in ("CREATE", "UPDATE") or not isinstance(obj, dict):
        return answer(API_VERSIONS[0], uid, allowed=True)
    try:
        runtime = runtime_from_object(obj)
    except ContractError as exc:
        return answer(API_VERSIONS[0], uid, allowed=False, message=f"hearth: {exc.message}")
    if runtime.spec.container.port == settings.sidecar_port:
        message = (
            f"hearth: InferenceRuntime {runtime.name} spec.container.port is {runtime.spec.container.port}, "
            "the port of Hearth's gateway sidecar in every pod; fix: choose another port (8000 is vLLM's default)"
        )
        return answer(API_VERSIONS[0], uid, allowed=False, message=message)
    warnings = [
        f"InferenceRuntime {other.name} has the same vendor ({other.spec.vendor}) and priority "
        f"({other.spec.priority}): pods that could use either will be refused until one priority changes"
        for other in runtimes
        if other.name != runtime.name
        and other.spec.vendor == runtime.spec.vendor
        and other.spec.priority == runtime.spec.priority
    ]
    return answer(API_VERSIONS[0], uid, allowed=True, warnings=warnings)


def check_llmservice(
    request: Mapping[str, Any], runtimes: Sequence[InferenceRuntime], settings: RenderSettings
) -> Review:
    """Validate an LLMService as the Deployment it compiles into would be validated, with the problems at the
    LLMService's own field paths (policies.llmservice); the same warnings (e.g. no runtime serves it yet)."""
    uid = str(request["uid"])
    obj = request.get("object")
    if request.get("operation") not in ("CREATE", "UPDATE") or not isinstance(obj, dict):
        return answer(API_VERSIONS[0], uid, allowed=True)
    if not _is_kind(request, "serving.hearth.dev", LLMSERVICE_KIND):
        return answer(API_VERSIONS[0], uid, allowed=True)
    name = (obj.get("metadata") or {}).get("name")
    try:
        verdict = validate_llmservice(obj, runtimes)
    except ContractError as exc:
        return answer(API_VERSIONS[0], uid, allowed=False, message=f"hearth: LLMService {name}: {exc.message}")
    return answer(API_VERSIONS[0], uid, allowed=True, warnings=list(verdict.warnings))
