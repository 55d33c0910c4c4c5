"""The scaler's side of waking before the rush (policies.anticipation): per model, the record of the hours it
was used, the wakes made today against the cap, and the wake in progress. The record lives in the scaler's
condition on the Deployment (`usage`, `anticipated`), so a new leader keeps it.

While a wake is in progress (from the wake until a request comes or the slot in which use usually has come
ends), each tick counts one started request for the model: the replica is not let go before then, and
scale-down-delay runs from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policies import Usage, Wake, format_usage, parse_usage, record_use, status_of, wake_due

DAY = 86400


@dataclass
class Record:
    usage: Usage = field(default_factory=Usage)
    day: int = 0  # the UTC day (since the epoch) the count is of
    woken: int = 0  # wakes made that day
    until: float = 0.0  # until when the wake in progress is held (epoch seconds; policies.anticipation.Wake)


class Anticipator:
    def __init__(self, per_day: int, wall: Callable[[], float] = time.time) -> None:
        self.per_day = per_day
        self.wall = wall
        self.records: dict[str, Record] = {}

    def _record(self, key: str, deployment: Mapping[str, Any]) -> Record:
        found = self.records.get(key)
        if found is None:
            fields = status_of(deployment)
            day, _, woken = (fields.get("anticipated") or "").partition(":")
            found = Record(parse_usage(fields.get("usage")))
            if day.isdigit() and woken.isdigit():
                found.day, found.woken = int(day), int(woken)
            self.records[key] = found
        return found

    def tick(
        self, key: str, deployment: Mapping[str, Any], enabled: bool, used: bool, current: int, eta: float | None
    ) -> tuple[bool, Wake | None]:
        """One tick for one model: records a use; returns (hold: count an expected start now, the wake that
        is due now or None). `eta`: the model's predicted start in seconds (none yet: a minute)."""
        if not enabled:
            self.records.pop(key, None)
            return False, None
        now = self.wall()
        state = self._record(key, deployment)
        if used:
            state.usage = record_use(state.usage, now)
            state.until = 0.0  # the expected use came (or another): the usual rules take it from here
        holding = now < state.until
        if used or holding or current > 0 or self.per_day <= 0:
            return holding, None
        wake = wake_due(state.usage, now, eta if eta is not None else 60.0)
        if wake is None or wake.until == state.until:
            return False, None
        today = int(now // DAY)
        if state.day != today:
            state.day, state.woken = today, 0
        if state.woken >= self.per_day:
            return False, None
        state.woken += 1
        state.until = wake.until  # held until a request comes or the slot in which it usually has ends
        return True, wake

    def fields(self, key: str) -> dict[str, str | None]:
        """What the condition keeps of the record (None: nothing)."""
        state = self.records.get(key)
        if state is None:
            return {"usage": None, "anticipated": None}
        return {
            "usage": format_usage(state.usage) or None,
            "anticipated": f"{state.day}:{state.woken}" if state.woken else None,
        }


@dataclass(frozen=True)
class Outcome:
    """A trace replayed: how many days' first requests met a cold start, and what the replica cost."""

    first_requests: int  # days with a request
    first_cold: int  # of those, days whose first request found the model at zero or still starting
    up_hours: float  # accelerator-hours the replica was up (one accelerator per replica)
    wakes: int  # anticipated wakes
    wasted: int  # anticipated wakes that no request followed while they were held


def replay(
    arrivals: list[float], start: float, end: float, *, eta: float, delay: float, per_day: int, step: float = 60.0
) -> Outcome:
    """The scaler's anticipation over a trace in simulated time (one tick per `step`): a model at zero wakes
    on a request (ready `eta` later) or on a due wake, and goes back to zero after `delay` without use, as
    the scaler's decisions do (scaler.decision); `per_day` 0 replays it without anticipation."""
    clock = [start]
    anticipator = Anticipator(per_day, lambda: clock[0])
    deployment: dict[str, Any] = {}
    pending = sorted(arrivals)
    up_since: float | None = None  # when the replica was asked for
    last_use = start
    up_seconds = 0.0
    first_day = -1
    first_requests = first_cold = wakes = wasted = 0
    woke_for: float | None = None
    index = 0
    while clock[0] < end:
        now = clock[0]
        batch = []
        while index < len(pending) and pending[index] < now + step:
            batch.append(pending[index])
            index += 1
        for arrival in batch:
            day = int(arrival // DAY)
            if day != first_day:
                first_day, first_requests = day, first_requests + 1
                if up_since is None or arrival < up_since + eta:
                    first_cold += 1
        if batch:
            last_use = batch[-1]
            if woke_for is not None and batch[0] <= woke_for:
                woke_for = None  # the expected use came
        hold, wake = anticipator.tick("m", deployment, per_day > 0, bool(batch), 1 if up_since is not None else 0, eta)
        if wake is not None:
            wakes += 1
            if woke_for is not None:
                wasted += 1
            woke_for = wake.until
        if up_since is None and (batch or wake is not None):
            up_since = batch[0] if batch else now
        if hold:
            last_use = now
        if up_since is not None and not batch and not hold and now - last_use >= delay:
            up_seconds += now - up_since
            up_since = None
        if woke_for is not None and now > woke_for:
            wasted, woke_for = wasted + 1, None
        clock[0] = now + step
    if up_since is not None:
        up_seconds += end - up_since
    return Outcome(first_requests, first_cold, up_seconds / 3600, wakes, wasted)
