"""The scaler: the leader-elected loop that scales Hearth Deployments. Its public names (the pure decision
too, which the benchmark replays); the rest is its own."""

from scaler.decision import Decision, Memory, Observation, decide
from scaler.server import serve
from scaler.settings import ScalerSettings

__all__ = ["Decision", "Memory", "Observation", "ScalerSettings", "decide", "serve"]
