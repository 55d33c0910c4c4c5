"""Waking before the rush (`hearth.dev/anticipate: "true"`), pure: learn at what times of day a model is used,
and wake it shortly before the time its use usually begins, so that the morning's first user finds it up.

The model, and why: quarter-hour slots (UTC), one bit per slot ("was it used then"), four weeks kept (a
672-bit mask per week). A time of day is judged by the recent days of the same kind (weekdays by the last
weekdays, up to twenty of them; weekends by weekends): people keep office hours on every weekday alike, so
twenty samples teach more than the four of one weekday, and a new model learns from yesterday. A slot is
*possible* when it saw use on at least a tenth of those days, *usual* on at least half. A wake is *due*
when the next slot is possible, the one before it is not (the start of a stretch of use, not every quarter
of a busy day), a usual slot follows within the hour (a habit, not one late evening), and the next slot
begins within the model's predicted start time plus a lead. The replica is then held until a request comes
or the first usual slot ends: people begin a little earlier or later each day, and the wake covers the
spread seen. No model to train, nothing to tune but the cap, a few hundred bytes of state per model;
heavier forecasting (seasonal ARIMA, Prophet) would need dense data that a scale-to-zero model lacks.

Cost is bounded by the caller: at most `cap` wakes per model per day, each held at most an hour and a
quarter and then one scale-down-delay when no request comes (the scaler counts an expected use as a
started request).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

SLOT = 900.0  # seconds: a quarter of an hour
PER_DAY = 96
SLOTS = 7 * PER_DAY  # a week of them
DAY = 86400.0
KEPT_WEEKS = 4
LEAD = 60.0  # seconds of margin before the slot, beyond the predicted start
WITHIN = 4  # an expected slot must come within this many slots of the start


@dataclass(frozen=True)
class Usage:
    """Which slots of the last weeks saw use: `masks[0]` is the week numbered `week` (slots since the epoch
    // SLOTS; weeks begin Thursday 00:00 UTC, as the epoch did), `masks[1]` the week before, and so on."""

    week: int = 0
    masks: tuple[int, ...] = ()


@dataclass(frozen=True)
class Wake:
    """A wake that is due: for use that may begin at `at` (epoch seconds) and usually has by `until` (the end
    of the first slot used on `used` of the last `seen` days of its kind)."""

    at: float
    until: float
    used: int
    seen: int

    @property
    def text(self) -> str:
        start = dt.datetime.fromtimestamp(self.at, dt.UTC).strftime("%a %H:%M")
        end = dt.datetime.fromtimestamp(self.until, dt.UTC).strftime("%H:%M UTC")
        return f"{start}-{end} (used then on {self.used} of the last {self.seen} such days)"


def _slot(now: float) -> int:
    return int(now // SLOT)


def rolled(usage: Usage, now: float) -> Usage:
    """The history as of the week of `now` (empty weeks added for the weeks that passed, the oldest dropped)."""
    week = _slot(now) // SLOTS
    shift = week - usage.week
    if not usage.masks:
        return Usage(week, (0,))
    if shift <= 0:
        return usage
    return Usage(week, ((0,) * min(shift, KEPT_WEEKS) + usage.masks)[:KEPT_WEEKS])


def record(usage: Usage, now: float) -> Usage:
    """The model was used at `now`."""
    current = rolled(usage, now)
    slot = _slot(now) % SLOTS
    return Usage(current.week, (current.masks[0] | 1 << slot, *current.masks[1:]))


def _weekend(day: int) -> bool:
    return (day + 3) % 7 >= 5  # the epoch's day 0 was a Thursday


def expected(usage: Usage, at: float, now: float) -> tuple[int, int]:
    """On how many of the complete past days of the same kind as `at`'s (weekday, weekend) that the record
    holds the slot of `at` saw use, and how many such days there are."""
    current = rolled(usage, now)
    today = int(now // DAY)
    slot = _slot(at) % PER_DAY
    first = (current.week - len(current.masks) + 1) * SLOTS * SLOT // DAY  # the oldest recorded day
    used = seen = 0
    for day in range(int(first), today):
        if _weekend(day) != _weekend(int(at // DAY)):
            continue
        index = int(day * DAY // SLOT)  # the day's first slot since the epoch
        mask = current.masks[current.week - index // SLOTS]
        seen += 1
        used += mask >> (index % SLOTS + slot) & 1
    return used, seen


def possible(used: int, seen: int) -> bool:
    return used >= max(1, math.ceil(seen / 10))


def habitual(used: int, seen: int) -> bool:
    return seen >= 1 and used >= max(1, math.ceil(seen / 2))


def due(usage: Usage, now: float, eta: float, lead: float = LEAD) -> Wake | None:
    """The wake to make now, if the next slot is where a usual stretch of use may begin, within eta + lead."""
    boundary = (_slot(now) + 1) * SLOT
    if boundary - now > eta + lead:
        return None
    if not possible(*expected(usage, boundary, now)) or possible(*expected(usage, boundary - SLOT, now)):
        return None
    for step in range(WITHIN):
        used, seen = expected(usage, boundary + step * SLOT, now)
        if habitual(used, seen):
            return Wake(boundary, boundary + (step + 1) * SLOT, used, seen)
    return None


def format_usage(usage: Usage) -> str:
    """`usage` in the scaler's condition: `2904:1f00,0,1f00` (the week, then each week's slots in hex)."""
    return f"{usage.week}:" + ",".join(f"{mask:x}" for mask in usage.masks) if usage.masks else ""


def parse_usage(text: str | None) -> Usage:
    week, _, masks = (text or "").partition(":")
    try:
        parsed = tuple(int(mask, 16) for mask in masks.split(",")) if masks else ()
        return Usage(int(week), parsed[:KEPT_WEEKS]) if parsed and all(m < 1 << SLOTS for m in parsed) else Usage()
    except ValueError:
        return Usage()
