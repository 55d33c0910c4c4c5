"""Waking before the rush (policies.anticipation, scaler.anticipate): the week's record, the rule that a wake is
due, the cap, and a replayed month of office-hours traffic in simulated time: the first request of each day
meets a warm model once the habit is learned, for a bounded number of extra accelerator-hours."""

from __future__ import annotations

import datetime as dt

from policies.anticipation import Usage, due, expected, format_usage, parse_usage, record, rolled
from scaler.anticipate import Anticipator, replay

MONDAY = dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp()  # a Monday, 00:00 UTC
HOUR, DAY, WEEK = 3600.0, 86400.0, 7 * 86400.0


def at(day: int, hour: float) -> float:
    return MONDAY + day * DAY + hour * HOUR


def used_at_nine(weeks: int) -> Usage:
    """Every weekday from 9:00 to 11:00 (each quarter of an hour), for `weeks` weeks."""
    usage = Usage()
    for week in range(weeks):
        for day in range(5):
            for quarter in range(8):
                usage = record(usage, at(7 * week + day, 9.1 + quarter / 4))
    return usage


def test_the_record_keeps_four_weeks_of_hours() -> None:
    usage = used_at_nine(6)
    current = rolled(usage, at(42, 8))
    assert len(current.masks) == 4  # the weeks (Thursday to Wednesday) from day 17 on: days 17-41 complete
    assert expected(usage, at(42, 9), at(42, 8)) == (17, 17)  # every weekday of them used at 9:00
    assert expected(usage, at(42, 14), at(42, 8)) == (0, 17)
    assert expected(usage, at(41, 9), at(42, 8)) == (0, 8)  # weekends are judged by weekends
    assert parse_usage(format_usage(usage)) == usage
    assert parse_usage("junk") == Usage() and parse_usage("12:zz") == Usage() and parse_usage(None) == Usage()


def test_a_wake_is_due_before_an_hour_in_which_use_usually_begins() -> None:
    usage = used_at_nine(2)
    monday = 14  # the third week's Monday
    wake = due(usage, at(monday, 9) - 100, eta=60)
    assert wake is not None and wake.at == at(monday, 9) and wake.until == at(monday, 9.25)
    # The record began with the week of day 0, Thursday 29 October: two weekdays before the first use.
    assert wake.text == "Mon 09:00-09:15 UTC (used then on 10 of the last 12 such days)"
    assert due(usage, at(monday, 9) - 600, eta=60) is None  # too early: more than eta + lead ahead
    assert due(usage, at(monday, 10) - 100, eta=60) is None  # 10:00 continues a stretch: no wake
    assert due(usage, at(monday, 11) - 100, eta=60) is None  # 11:00: the stretch is over
    assert due(usage, at(monday + 5, 9) - 100, eta=60) is None  # Saturday: never used
    assert due(Usage(), at(monday, 9) - 100, eta=60) is None  # nothing learned yet


def test_the_cap_bounds_wakes_per_day_and_a_use_ends_the_hold() -> None:
    clock = [at(14, 9) - 100]
    anticipator = Anticipator(per_day=1, wall=lambda: clock[0])
    deployment: dict[str, object] = {}
    anticipator.records["m"] = anticipator._record("m", deployment)
    anticipator.records["m"].usage = used_at_nine(2)
    hold, wake = anticipator.tick("m", deployment, True, False, 0, 60.0)
    assert hold and wake is not None
    clock[0] += 600  # within the slot in which use usually begins: held, no second wake
    assert anticipator.tick("m", deployment, True, False, 1, 60.0) == (True, None)
    clock[0] = at(14, 9.25) + 1  # the slot passed, no request came: let go (scale-down-delay runs from here)
    assert anticipator.tick("m", deployment, True, False, 1, 60.0) == (False, None)
    clock[0] = at(14, 13) - 100  # no habit at 13:00, and today's one wake is spent anyway
    assert anticipator.tick("m", deployment, True, False, 0, 60.0) == (False, None)
    assert anticipator.fields("m")["anticipated"] == f"{int(clock[0] // DAY)}:1"
    assert anticipator.tick("m", deployment, False, False, 0, 60.0) == (False, None)  # switched off: forgotten
    assert anticipator.fields("m") == {"usage": None, "anticipated": None}


def office_month() -> list[float]:
    """Four weeks of weekday use: a first request at 09:05, then one every 4 minutes until 12:00, and from
    13:30 to 17:30; nothing at weekends."""
    arrivals = []
    for day in range(28):
        if day % 7 >= 5:
            continue
        for start, end in ((9 + 5 / 60, 12.0), (13.5, 17.5)):
            hour = start
            while hour < end:
                arrivals.append(at(day, hour))
                hour += 4 / 60
    return arrivals


def test_a_replayed_month_meets_its_mornings_warm_for_bounded_extra_hours() -> None:
    trace = office_month()
    last_week = [t for t in trace if t >= at(21, 0)]
    plain = replay(last_week, at(21, 0), at(28, 0), eta=90, delay=300, per_day=0)
    learned = replay(trace, at(0, 0), at(28, 0), eta=90, delay=300, per_day=2)
    learned_last = replay(trace, at(0, 0), at(21, 0), eta=90, delay=300, per_day=2)
    assert (plain.first_requests, plain.first_cold) == (5, 5)  # every morning's first user waits a start
    # From the third day on, every weekday morning and every return from lunch is anticipated.
    assert learned.first_requests == 20 and learned.first_cold == 2  # Monday, and Tuesday (one day is no habit)
    assert learned.wakes - learned_last.wakes == 10 and learned.wasted == 0
    extra = (learned.up_hours - learned_last.up_hours) - plain.up_hours
    assert 0 < extra <= 10 * (90 + 60 + 900 + 300) / 3600  # each wake: eta + lead + its slot + the delay, at most
