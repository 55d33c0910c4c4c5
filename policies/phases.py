"""The visible phase of a Hearth Deployment, pure: what `kubectl get deploy -L hearth.dev/phase` shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


# Hearth's status lives in one condition of the Deployment's status, not in an annotation: a Deployment's
# generation moves with every change of its annotations (they are copied to its ReplicaSets), so a status
# annotation made each write a new "generation" that Argo CD shows as a rollout in progress. Status writes
# bump neither generation nor anything that GitOps diffs. The deployment controller keeps foreign conditions
# (it copies the list before setting its own) and writes with optimistic concurrency, so it never puts back
# a stale copy of ours.
CONDITION = "hearth.dev/Serving"
FIELDS = (
    "demand",
    "desired",
    "ready",
    "runtime",
    "prewarmed",
    "used",
    "starts",
    "eta",
    "cold-eta",
    "usage",
    "anticipated",
)


def condition(phase_now: str, status: Mapping[str, Any], now: str, since: str) -> dict[str, str]:
    """The condition for one Deployment: `reason` is the phase (since `since`), `message` says the rest in
    words that `status_of` reads back (`kubectl get deploy -o yaml` shows it as is)."""
    parts = [f"{key} {status[key]}" for key in FIELDS if status.get(key) is not None]
    text = "; ".join([*parts, str(status.get("reason") or "")])
    if status.get("failure"):
        text += f"; failed: {status['failure']}"
    return {
        "type": CONDITION,
        "status": "True" if phase_now in (READY, SCALING) else "False",
        "reason": phase_now,
        "message": text,
        "lastUpdateTime": now,
        "lastTransitionTime": since,
    }


def _ours(deployment: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for item in (deployment.get("status") or {}).get("conditions") or []:
        if item.get("type") == CONDITION:
            return dict(item)
    return None


def phase_since(deployment: Mapping[str, Any], phase_now: str) -> str | None:
    """When the Deployment entered `phase_now`, as the condition already written says (a restarted scaler
    keeps the time instead of resetting it); None when the condition says another phase or is absent."""
    ours = _ours(deployment)
    return str(ours["lastTransitionTime"]) if ours and ours.get("reason") == phase_now else None


def status_of(deployment: Mapping[str, Any]) -> dict[str, str]:
    """The fields `condition` wrote (demand, desired, ready, runtime), from a Deployment as the API returns
    it; empty when the scaler has not written one yet."""
    ours = _ours(deployment)
    fields: dict[str, str] = {}
    if ours is not None:
        for part in str(ours.get("message") or "").split("; "):
            if part.startswith("failed: "):
                break  # the failure is the model's own words: read nothing into them
            key, _, value = part.partition(" ")
            if key in FIELDS and value:
                fields.setdefault(key, value)
    return fields


def failure_of(deployment: Mapping[str, Any]) -> str | None:
    """Why the model cannot start, as the scaler's condition says (the part after `failed: `)."""
    ours = _ours(deployment)
    _, found, failure = str((ours or {}).get("message") or "").partition("; failed: ")
    return failure.strip() or None if found else None
