"""The scaling decision, pure: demand history and annotations in, desired replicas out. No I/O, no clock
of its own (the caller passes `now`).

- From zero, the first demand means one replica at once (activation never waits for a window), or more
  when the demand already asks for more.
- Up: ceil(demand / target) within min..max, in the tick that sees the burst.
- Down: only after demand has stayed lower for `scale-down-delay`, one replica per delay, never below the
  number of pods that still have a stream open; to zero only when min is 0, nothing is held or in flight,
  and no request has started for a whole `scale-down-delay` (requests that start and end between two
  ticks are counted by the front doors, so steady short traffic is never scaled to zero).
- Data that is not fresh (a gateway or sidecar did not answer) never leads down: it may undercount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from policies import ScaleSpec


@dataclass(frozen=True)
class Observation:
    demand: int  # held + in flight, summed over every gateway replica and sidecar
    busy_pods: int = 0  # pods with at least one stream open
    fresh: bool = True  # every demand source answered this tick
    started: int = 0  # requests that started since the previous tick, summed over every front door


@dataclass(frozen=True)
class Memory:
    """What the decision remembers between ticks."""

    lower_since: float | None = None  # when demand first asked for fewer replicas than we have
    last_step_down: float | None = None
    last_started: float | None = None  # when a tick last saw a request start


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    memory: Memory

    def changes(self, current: int) -> bool:
        return self.replicas != current


def wanted(spec: ScaleSpec, demand: int) -> int:
    """Replicas the demand asks for, within min..max (at least one while there is any demand)."""
    raw = math.ceil(demand / spec.target) if demand > 0 else 0
    if demand > 0:
        raw = max(raw, 1)
    return max(spec.min_replicas, min(spec.max_replicas, raw))


def decide(spec: ScaleSpec, current: int, seen: Observation, now: float, memory: Memory) -> Decision:
    if seen.started:  # a request that came and went between ticks still asks for a replica
        memory = replace(memory, last_started=now)
        seen = replace(seen, demand=max(seen.demand, 1))
    target = wanted(spec, seen.demand)
    if current < spec.min_replicas:
        return Decision(
            spec.min_replicas, f"below min-replicas {spec.min_replicas}", Memory(last_started=memory.last_started)
        )
    if current > spec.max_replicas:
        return Decision(
            spec.max_replicas, f"above max-replicas {spec.max_replicas}", Memory(last_started=memory.last_started)
        )
    if target > current:
        reason = (
            "activating: a request is waiting"
            if current == 0
            else (f"demand {seen.demand} over target {spec.target} per replica")
        )
        return Decision(target, reason, Memory(last_started=memory.last_started))
    if target == current:
        return Decision(current, "steady", replace(memory, lower_since=None))
    # Demand asks for fewer replicas than we have.
    floor = max(target, min(seen.busy_pods, current))
    if floor >= current or not seen.fresh:
        why = "pods still have streams open" if seen.fresh else "demand data incomplete this tick"
        return Decision(current, f"holding: {why}", replace(memory, lower_since=memory.lower_since or now))
    lower_since = memory.lower_since if memory.lower_since is not None else now
    waited_from = max(lower_since, memory.last_step_down or lower_since)
    if now - waited_from < spec.scale_down_delay:
        return Decision(current, "waiting out scale-down-delay", replace(memory, lower_since=lower_since))
    step = current - 1
    if step == 0 and (spec.min_replicas > 0 or seen.demand > 0):
        return Decision(current, "holding: not idle", replace(memory, lower_since=lower_since))
    if step == 0 and memory.last_started is not None and now - memory.last_started < spec.scale_down_delay:
        return Decision(
            current, "holding: a request started within scale-down-delay", replace(memory, lower_since=lower_since)
        )
    reason = "idle: scaling to zero" if step == 0 else f"demand {seen.demand} below target for scale-down-delay"
    after = Memory(lower_since=now if step > floor else None, last_step_down=now, last_started=memory.last_started)
    return Decision(step, reason, after)
