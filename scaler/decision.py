"""The scaling decision, pure: demand history and annotations in, desired replicas out. No I/O, no clock
of its own (the caller passes `now`).

Demand is a windowed measure (see the README's formulas): the level of a tick is the larger of what is
held or in flight right now and the average concurrency over the short window (the front doors' running
integral of held + in flight, so requests that start and end between two ticks count), and at least one
when any request started since the previous tick. The scale-down delay is the stable window: the level
must stay below the current replicas for all of it.

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
    busy_seconds: float = 0.0  # concurrency integrated since the previous tick (request-seconds), idem
    interval: float = 0.0  # the seconds those counts cover


@dataclass(frozen=True)
class Memory:
    """What the decision remembers between ticks."""

    lower_since: float | None = None  # when demand first asked for fewer replicas than we have
    last_step_down: float | None = None
    last_started: float | None = None  # when a tick last saw a request start
    window: tuple[tuple[float, float, float], ...] = ()  # recent ticks: (time, interval, busy_seconds)


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    memory: Memory

    def changes(self, current: int) -> bool:
        return self.replicas != current


PANIC_SHARE = 0.1  # the short window is a tenth of the stable one (Knative's default)...
PANIC_MIN = 6.0  # ...but never under 6 s (Knative's 60 s stable window gives 6 s)


def short_window(spec: ScaleSpec) -> float:
    return min(spec.scale_down_delay, max(PANIC_MIN, spec.scale_down_delay * PANIC_SHARE))


def windowed(spec: ScaleSpec, memory: Memory, seen: Observation, now: float) -> tuple[float, Memory]:
    """The average concurrency over the short window, with this tick's sample added to the memory."""
    since = now - short_window(spec)
    window = tuple(w for w in memory.window if w[0] > since)
    if seen.interval > 0:
        window = (*window, (now, seen.interval, seen.busy_seconds))
    span = sum(w[1] for w in window)
    average = sum(w[2] for w in window) / span if span > 0 else 0.0
    return average, replace(memory, window=window)


def wanted(spec: ScaleSpec, demand: float) -> int:
    """Replicas the demand asks for, within min..max (at least one while there is any demand)."""
    raw = math.ceil(demand / spec.target) if demand > 0 else 0
    if demand > 0:
        raw = max(raw, 1)
    return max(spec.min_replicas, min(spec.max_replicas, raw))


def decide(spec: ScaleSpec, current: int, seen: Observation, now: float, memory: Memory) -> Decision:
    average, memory = windowed(spec, memory, seen, now)
    level = max(float(seen.demand), average)
    if seen.started:  # a request that came and went between ticks still asks for a replica
        memory = replace(memory, last_started=now)
        level = max(level, 1.0)
    target = wanted(spec, level)
    kept = Memory(last_started=memory.last_started, window=memory.window)  # what survives any change
    if current < spec.min_replicas:
        return Decision(spec.min_replicas, f"below min-replicas {spec.min_replicas}", kept)
    if current > spec.max_replicas:
        return Decision(spec.max_replicas, f"above max-replicas {spec.max_replicas}", kept)
    if target > current:
        reason = (
            "activating: a request is waiting"
            if current == 0
            else (f"demand {level:g} over target {spec.target} per replica")
        )
        return Decision(target, reason, kept)
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
    if step == 0 and (spec.min_replicas > 0 or level > 0):
        return Decision(current, "holding: not idle", replace(memory, lower_since=lower_since))
    if step == 0 and memory.last_started is not None and now - memory.last_started < spec.scale_down_delay:
        return Decision(
            current, "holding: a request started within scale-down-delay", replace(memory, lower_since=lower_since)
        )
    reason = "idle: scaling to zero" if step == 0 else f"demand {level:g} below target for scale-down-delay"
    after = replace(kept, lower_since=now if step > floor else None, last_step_down=now)
    return Decision(step, reason, after)
