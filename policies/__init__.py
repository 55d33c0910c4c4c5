"""Hearth's pure core: the annotation contract, InferenceRuntime profiles, runtime selection, pod rendering.

No I/O and no clock: data in, data out. Every other component calls it.
"""

from policies.annotations import (
    ENABLED_LABEL,
    KEYS,
    PHASE_LABEL,
    PREFIX,
    RENDERED,
    STATUS,
    PodSpec,
    ScaleSpec,
    parse_pod,
    parse_scale,
)
from policies.deployment import Verdict, deployment_name_of, render_for_pod, validate_deployment, with_scaler_defaults
from policies.errors import Collector, ContractError, Problem
from policies.names import (
    NAMES_CONFIGMAP,
    NAMES_LABEL,
    Claimant,
    assign_names,
    claimant_of,
    names_configmap,
    names_of_configmap,
    owner,
    squatting_warnings,
)
from policies.objects import (
    PodBackend,
    backend_of,
    is_ready,
    model_key,
    model_key_of,
    published_failure,
    scale_of,
    served_name_of,
    sidecar_url,
    start_failure,
)
from policies.patch import diff
from policies.phase import ACTIVATING, DEGRADED, PHASES, READY, SCALED_TO_ZERO, SCALING, phase
from policies.render import SHIPPED_IMAGE, RenderSettings, render_pod
from policies.runtime import API_VERSION, GROUP, KIND, InferenceRuntime, RuntimeSpec, runtime_from_object
from policies.selection import select_runtime
from policies.stamp import MalformedStamp, Stamp, parse_stamp, stamp_of
from policies.values import duration_seconds, format_duration

__all__ = [
    "ACTIVATING",
    "API_VERSION",
    "DEGRADED",
    "ENABLED_LABEL",
    "GROUP",
    "KEYS",
    "KIND",
    "NAMES_CONFIGMAP",
    "NAMES_LABEL",
    "PHASES",
    "PHASE_LABEL",
    "PREFIX",
    "READY",
    "RENDERED",
    "SCALED_TO_ZERO",
    "SCALING",
    "SHIPPED_IMAGE",
    "STATUS",
    "Claimant",
    "Collector",
    "ContractError",
    "InferenceRuntime",
    "MalformedStamp",
    "PodBackend",
    "PodSpec",
    "Problem",
    "RenderSettings",
    "RuntimeSpec",
    "ScaleSpec",
    "Stamp",
    "Verdict",
    "assign_names",
    "backend_of",
    "claimant_of",
    "deployment_name_of",
    "diff",
    "duration_seconds",
    "format_duration",
    "is_ready",
    "model_key",
    "model_key_of",
    "names_configmap",
    "names_of_configmap",
    "owner",
    "parse_pod",
    "parse_scale",
    "parse_stamp",
    "phase",
    "published_failure",
    "render_for_pod",
    "render_pod",
    "runtime_from_object",
    "scale_of",
    "select_runtime",
    "served_name_of",
    "sidecar_url",
    "squatting_warnings",
    "stamp_of",
    "start_failure",
    "validate_deployment",
    "with_scaler_defaults",
]
