"""The visible phase of a Hearth Deployment, pure: what `kubectl get deploy -L hearth.dev/phase` shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SCALED_TO_ZERO, ACTIVATING, READY, SCALING, DEGRADED = "ScaledToZero", "Activating", "Ready", "Scaling", "Degraded"
CRASH_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"})


def failure(deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the model cannot start, if it cannot: pods the ReplicaSet may not create (e.g. refused by the
    webhook), a rollout past its progress deadline, or containers stuck failing."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason"))
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return str(condition.get("message"))
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in CRASH_REASONS:
                return f"pod {pod['metadata']['name']}: {waiting.get('reason')}: {waiting.get('message', '')}".strip()
    return None


def phase(desired: int, ready: int, failed: str | None) -> str:
    if failed is not None and desired > 0 and ready < desired:
        return DEGRADED
    if desired == 0:
        return SCALED_TO_ZERO
    if ready == 0:
        return ACTIVATING
    return READY if ready == desired else SCALING
