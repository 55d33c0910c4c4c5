"""Hearth's pure core: the annotation contract, InferenceRuntime profiles, runtime selection, pod rendering.

No I/O and no clock: data in, data out. Every other component calls it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies.adoption import CONTAINER_KEY, accelerator_resources, model_container, reported_name
    from policies.annotations import (
        ENABLED_LABEL,
        KEYS,
        PHASE_LABEL,
        PREFIX,
        RENDERED,
        STATUS,
        TEMPLATE_WHERE,
        PodSpec,
        ScaleSpec,
        parse_pod,
        parse_scale,
    )
    from policies.annotations import (
        RENDER_ONLY as RENDER_ONLY_KEYS,
    )
    from policies.anticipation import Usage, Wake, format_usage, parse_usage
    from policies.anticipation import due as wake_due
    from policies.anticipation import record as record_use
    from policies.cachevolume import local_cache_volumes
    from policies.capacities import (
        Capacity,
        Holding,
        NodeRoom,
        capacity,
        fits,
        pod_needs,
        runtime_has_room,
        slim_node,
        slim_pod,
    )
    from policies.coldstart import COLD as COLD_START
    from policies.coldstart import (
        Progress,
        eta_for,
        format_history,
        kind_of,
        parse_history,
        predict,
        progress_of,
        stages_of,
    )
    from policies.deployment import (
        Verdict,
        deployment_name_of,
        render_for_pod,
        validate_deployment,
        with_scaler_defaults,
    )
    from policies.errors import Collector, ContractError, Problem
    from policies.keys import KEY_LABEL, ApiKey, api_key_of, unique_keys
    from policies.keys import digest as key_digest
    from policies.llmservice import KIND as LLMSERVICE_KIND
    from policies.llmservice import PLURAL as LLMSERVICE_PLURAL
    from policies.llmservice import LLMServiceSpec, compile_deployment, validate_llmservice
    from policies.llmservice import parse_spec as parse_llmservice
    from policies.modelcache import (
        CACHE_CLAIM,
        CACHED_MODEL,
        DEFAULT_ENDPOINT,
        HUBS,
        HubClient,
        cache_key,
        evictions,
        files_to_fetch,
        hub_id,
        node_label,
        normalize_endpoint,
    )
    from policies.modelcache import LABEL_PREFIX as CACHE_LABEL_PREFIX
    from policies.modelcache import LABEL_VALUE as CACHE_LABEL_VALUE
    from policies.modelcache import Entry as CacheEntry
    from policies.modelsource import ModelSource, parse_model_uri
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
        key_namespace,
        model_key,
        model_key_of,
        model_key_of_pod,
        published_failure,
        scale_of,
        served_names_of,
        sidecar_url,
        start_failure,
    )
    from policies.patch import diff
    from policies.phases import (
        ACTIVATING,
        CONDITION,
        DEGRADED,
        PHASES,
        READY,
        SCALED_TO_ZERO,
        SCALING,
        condition,
        phase,
        phase_since,
        status_of,
    )
    from policies.prewarm import PREWARM_FOR, PREWARM_NODE, prewarm_fetch, prewarm_job
    from policies.prewarm import Plan as PrewarmPlan
    from policies.prewarm import job_name as prewarm_job_name
    from policies.prewarm import job_state as prewarm_job_state
    from policies.prewarm import plan as prewarm_plan
    from policies.render import SHIPPED_IMAGE, RenderSettings, render_pod
    from policies.runtime import (
        API_VERSION,
        GROUP,
        KIND,
        InferenceRuntime,
        RuntimeSpec,
        runtime_from_object,
        valid_runtimes,
    )
    from policies.selection import select_runtime
    from policies.service_status import crd as llmservice_crd
    from policies.service_status import mirror as llmservice_status
    from policies.service_status import predicted_runtime, with_conditions
    from policies.service_status import same as same_status
    from policies.stamp import MalformedStamp, Stamp, parse_stamp, stamp_of
    from policies.values import api_time, duration_seconds, format_duration, quantity_bytes

# Where each public name lives (`public=attribute` when it is renamed), imported on first use (PEP 562):
# a process that reads a duration or a model URI does not build every pydantic model of the contract
# (InferenceRuntime alone is about 85 ms of each sidecar's and fetcher's start). tests/test_layers.py checks
# that this table, the imports above and __all__ name the same things.
_HOMES = {
    "policies.adoption": "CONTAINER_KEY accelerator_resources model_container reported_name",
    "policies.annotations": (
        "ENABLED_LABEL KEYS PHASE_LABEL PREFIX RENDERED STATUS TEMPLATE_WHERE PodSpec ScaleSpec parse_pod "
        "parse_scale RENDER_ONLY_KEYS=RENDER_ONLY"
    ),
    "policies.anticipation": "Usage Wake format_usage parse_usage wake_due=due record_use=record",
    "policies.cachevolume": "local_cache_volumes",
    "policies.capacities": "Capacity Holding NodeRoom capacity fits pod_needs runtime_has_room slim_node slim_pod",
    "policies.coldstart": (
        "COLD_START=COLD Progress eta_for format_history kind_of parse_history predict progress_of stages_of"
    ),
    "policies.deployment": "Verdict deployment_name_of render_for_pod validate_deployment with_scaler_defaults",
    "policies.errors": "Collector ContractError Problem",
    "policies.keys": "KEY_LABEL ApiKey api_key_of unique_keys key_digest=digest",
    "policies.llmservice": (
        "LLMSERVICE_KIND=KIND LLMSERVICE_PLURAL=PLURAL LLMServiceSpec compile_deployment validate_llmservice "
        "parse_llmservice=parse_spec"
    ),
    "policies.service_status": (
        "llmservice_crd=crd llmservice_status=mirror predicted_runtime with_conditions same_status=same"
    ),
    "policies.modelcache": (
        "CACHE_CLAIM CACHED_MODEL DEFAULT_ENDPOINT HUBS HubClient cache_key evictions files_to_fetch hub_id "
        "node_label normalize_endpoint CACHE_LABEL_PREFIX=LABEL_PREFIX CACHE_LABEL_VALUE=LABEL_VALUE "
        "CacheEntry=Entry"
    ),
    "policies.modelsource": "ModelSource parse_model_uri",
    "policies.names": (
        "NAMES_CONFIGMAP NAMES_LABEL Claimant assign_names claimant_of names_configmap names_of_configmap "
        "owner squatting_warnings"
    ),
    "policies.objects": (
        "PodBackend backend_of is_ready key_namespace model_key model_key_of model_key_of_pod "
        "published_failure scale_of served_names_of sidecar_url start_failure"
    ),
    "policies.patch": "diff",
    "policies.phases": (
        "ACTIVATING CONDITION DEGRADED PHASES READY SCALED_TO_ZERO SCALING condition phase phase_since status_of"
    ),
    "policies.prewarm": (
        "PREWARM_FOR PREWARM_NODE prewarm_fetch prewarm_job PrewarmPlan=Plan prewarm_job_name=job_name "
        "prewarm_job_state=job_state prewarm_plan=plan"
    ),
    "policies.render": "SHIPPED_IMAGE RenderSettings render_pod",
    "policies.runtime": "API_VERSION GROUP KIND InferenceRuntime RuntimeSpec runtime_from_object valid_runtimes",
    "policies.selection": "select_runtime",
    "policies.stamp": "MalformedStamp Stamp parse_stamp stamp_of",
    "policies.values": "api_time duration_seconds format_duration quantity_bytes",
}
_EXPORTS = {
    public: (module, attribute or public)
    for module, names in _HOMES.items()
    for public, _, attribute in (name.partition("=") for name in names.split())
}

__all__ = [
    "ACTIVATING",
    "API_VERSION",
    "CACHED_MODEL",
    "CACHE_CLAIM",
    "CACHE_LABEL_PREFIX",
    "CACHE_LABEL_VALUE",
    "COLD_START",
    "CONDITION",
    "CONTAINER_KEY",
    "DEFAULT_ENDPOINT",
    "DEGRADED",
    "ENABLED_LABEL",
    "GROUP",
    "HUBS",
    "KEYS",
    "KEY_LABEL",
    "KIND",
    "LLMSERVICE_KIND",
    "LLMSERVICE_PLURAL",
    "NAMES_CONFIGMAP",
    "NAMES_LABEL",
    "PHASES",
    "PHASE_LABEL",
    "PREFIX",
    "PREWARM_FOR",
    "PREWARM_NODE",
    "READY",
    "RENDERED",
    "RENDER_ONLY_KEYS",
    "SCALED_TO_ZERO",
    "SCALING",
    "SHIPPED_IMAGE",
    "STATUS",
    "TEMPLATE_WHERE",
    "ApiKey",
    "CacheEntry",
    "Capacity",
    "Claimant",
    "Collector",
    "ContractError",
    "Holding",
    "HubClient",
    "InferenceRuntime",
    "LLMServiceSpec",
    "MalformedStamp",
    "ModelSource",
    "NodeRoom",
    "PodBackend",
    "PodSpec",
    "PrewarmPlan",
    "Problem",
    "Progress",
    "RenderSettings",
    "RuntimeSpec",
    "ScaleSpec",
    "Stamp",
    "Usage",
    "Verdict",
    "Wake",
    "accelerator_resources",
    "api_key_of",
    "api_time",
    "assign_names",
    "backend_of",
    "cache_key",
    "capacity",
    "claimant_of",
    "compile_deployment",
    "condition",
    "deployment_name_of",
    "diff",
    "duration_seconds",
    "eta_for",
    "evictions",
    "files_to_fetch",
    "fits",
    "format_duration",
    "format_history",
    "format_usage",
    "hub_id",
    "is_ready",
    "key_digest",
    "key_namespace",
    "kind_of",
    "llmservice_crd",
    "llmservice_status",
    "local_cache_volumes",
    "model_container",
    "model_key",
    "model_key_of",
    "model_key_of_pod",
    "names_configmap",
    "names_of_configmap",
    "node_label",
    "normalize_endpoint",
    "owner",
    "parse_history",
    "parse_llmservice",
    "parse_model_uri",
    "parse_pod",
    "parse_scale",
    "parse_stamp",
    "parse_usage",
    "phase",
    "phase_since",
    "pod_needs",
    "predict",
    "predicted_runtime",
    "prewarm_fetch",
    "prewarm_job",
    "prewarm_job_name",
    "prewarm_job_state",
    "prewarm_plan",
    "progress_of",
    "published_failure",
    "quantity_bytes",
    "record_use",
    "render_for_pod",
    "render_pod",
    "reported_name",
    "runtime_from_object",
    "runtime_has_room",
    "same_status",
    "scale_of",
    "select_runtime",
    "served_names_of",
    "sidecar_url",
    "slim_node",
    "slim_pod",
    "squatting_warnings",
    "stages_of",
    "stamp_of",
    "start_failure",
    "status_of",
    "unique_keys",
    "valid_runtimes",
    "validate_deployment",
    "validate_llmservice",
    "wake_due",
    "with_conditions",
    "with_scaler_defaults",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module when first asked (the module's own import runs once)."""
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'policies' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next reads skip this function
    return value
