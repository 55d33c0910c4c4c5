"""Waking before the rush: office-hours traffic replayed in simulated time through the scaler's anticipation
(scaler.anticipate.replay, which drives its Anticipator and the rule of policies.anticipation), with and
without it, over several weeks.

    .venv/bin/python bench/anticipation.py [--weeks 6] [--seed 1] [--eta 90] [--delay 300] [--per-day 2]

The trace: on each weekday a first request between 08:45 and 09:30 UTC, then one every 2-6 minutes until
about 12:00, a return between 13:15 and 14:00 until about 17:30; one weekday in ten off; one weekend day in
ten with a short session at a random hour. Printed: the share of days whose first request met a cold
start, the accelerator-hours the model held, the anticipated wakes and how many no request followed.
The first week is the learning week in both runs; figures are for the weeks after it.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaler import replay

DAY, WEEK = 86400.0, 7 * 86400.0
MONDAY = 1_793_577_600.0  # 2026-11-02 00:00 UTC, a Monday


def office_trace(weeks: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    arrivals: list[float] = []

    def session(day: int, first: float, end: float) -> None:
        hour = first
        while hour < end:
            arrivals.append(MONDAY + day * DAY + hour * 3600)
            hour += rng.uniform(2, 6) / 60

    for day in range(weeks * 7):
        if day % 7 < 5:
            if rng.random() < 0.1:
                continue  # a day off
            session(day, rng.uniform(8.75, 9.5), 12 + rng.uniform(-0.25, 0.25))
            session(day, rng.uniform(13.25, 14), 17.5 + rng.uniform(-0.5, 0.5))
        elif rng.random() < 0.1:
            start = rng.uniform(10, 20)
            session(day, start, start + rng.uniform(0.3, 1.5))
    return arrivals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weeks", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--eta", type=float, default=90.0, help="the model's start, seconds")
    parser.add_argument("--delay", type=float, default=300.0, help="scale-down-delay, seconds")
    parser.add_argument("--per-day", type=int, default=2, help="--anticipations-per-day")
    args = parser.parse_args()
    trace = office_trace(args.weeks, args.seed)
    learned_from = MONDAY + WEEK
    end = MONDAY + args.weeks * WEEK
    print(f"{len(trace)} requests over {args.weeks} weeks (seed {args.seed}); start {args.eta:g} s, "
          f"scale-down-delay {args.delay:g} s; figures for weeks 2-{args.weeks}")  # fmt: skip
    for label, per_day in (("without anticipation", 0), (f"anticipate, {args.per_day}/day", args.per_day)):
        whole = replay(trace, MONDAY, end, eta=args.eta, delay=args.delay, per_day=per_day)
        first = replay(trace, MONDAY, learned_from, eta=args.eta, delay=args.delay, per_day=per_day)
        days = whole.first_requests - first.first_requests
        cold = whole.first_cold - first.first_cold
        hours = whole.up_hours - first.up_hours
        wakes, wasted = whole.wakes - first.wakes, whole.wasted - first.wasted
        print(
            f"  {label:<24} first request of the day met a cold start: {cold}/{days} ({100 * cold / days:.0f} %); "
            f"accelerator-hours {hours:.1f}; wakes {wakes} ({wasted} that no request followed)"
        )


if __name__ == "__main__":
    main()
