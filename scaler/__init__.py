"""The scaler: the leader-elected loop that scales Hearth Deployments. Its public names (the pure decision
and packing too, which the benchmarks replay); the rest is its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import exports

if TYPE_CHECKING:
    from scaler.anticipate import replay
    from scaler.decision import Decision, Memory, Observation, decide, wanted
    from scaler.packing import Candidate, Rules, Waiter, plan
    from scaler.server import serve
    from scaler.settings import ScalerSettings

# Imported on first use (common/lazy.py): reading a settings model does not load every server.
_EXPORTS = {
    "Decision": ("scaler.decision", "Decision"),
    "Memory": ("scaler.decision", "Memory"),
    "Observation": ("scaler.decision", "Observation"),
    "ScalerSettings": ("scaler.settings", "ScalerSettings"),
    "decide": ("scaler.decision", "decide"),
    "wanted": ("scaler.decision", "wanted"),
    "Candidate": ("scaler.packing", "Candidate"),
    "Rules": ("scaler.packing", "Rules"),
    "Waiter": ("scaler.packing", "Waiter"),
    "plan": ("scaler.packing", "plan"),
    "replay": ("scaler.anticipate", "replay"),
    "serve": ("scaler.server", "serve"),
}
__all__ = [
    "Candidate",
    "Decision",
    "Memory",
    "Observation",
    "Rules",
    "ScalerSettings",
    "Waiter",
    "decide",
    "plan",
    "replay",
    "serve",
    "wanted",
]

__getattr__ = exports(__name__, _EXPORTS)
