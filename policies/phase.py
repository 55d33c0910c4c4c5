"""The visible phase of a Hearth Deployment, pure: what `kubectl get deploy -L hearth.dev/phase` shows."""

from __future__ import annotations

SCALED_TO_ZERO, ACTIVATING, READY, SCALING, DEGRADED = "ScaledToZero", "Activating", "Ready", "Scaling", "Degraded"
PHASES = (SCALED_TO_ZERO, ACTIVATING, READY, SCALING, DEGRADED)


def phase(desired: int, ready: int, failed: str | None) -> str:
    if failed is not None and desired > 0 and ready < desired:
        return DEGRADED
    if desired == 0:
        return SCALED_TO_ZERO
    if ready == 0:
        return ACTIVATING
    return READY if ready == desired else SCALING
