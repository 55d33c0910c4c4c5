"""Hearth's pure core: the annotation contract, InferenceRuntime profiles, runtime selection, pod rendering.

No I/O and no clock: data in, data out. Every other component calls it.
"""

from policies.annotations import ENABLED_LABEL, KEYS, PREFIX, RENDERED, PodSpec, ScaleSpec, parse_pod, parse_scale
from policies.deployment import Verdict, deployment_name_of, render_for_pod, validate_deployment
from policies.errors import Collector, ContractError, Problem
from policies.render import SHIPPED_IMAGE, RenderSettings, render_pod
from policies.runtime import API_VERSION, GROUP, KIND, InferenceRuntime, RuntimeSpec, runtime_from_object
from policies.selection import select_runtime

__all__ = [
    "API_VERSION",
    "ENABLED_LABEL",
    "GROUP",
    "KEYS",
    "KIND",
    "PREFIX",
    "RENDERED",
    "SHIPPED_IMAGE",
    "Collector",
    "ContractError",
    "InferenceRuntime",
    "PodSpec",
    "Problem",
    "RenderSettings",
    "RuntimeSpec",
    "ScaleSpec",
    "Verdict",
    "deployment_name_of",
    "parse_pod",
    "parse_scale",
    "render_for_pod",
    "render_pod",
    "runtime_from_object",
    "select_runtime",
    "validate_deployment",
]
