"""The scaling decision, table-driven and over demand traces. The traces are synthetic (seeded random
wobble, hand-written tables), shaped like what the scaler sees every tick; none was recorded from a
live system."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest

from policies import ScaleSpec
from scaler.decision import Memory, Observation, decide, short_window, wanted, windowed

SPEC = ScaleSpec(min_replicas=0, max_replicas=3, target=10, scale_down_delay=60)


def run_trace(spec: ScaleSpec, trace: Sequence[tuple[float, Observation]], start: int = 0) -> list[int]:
    replicas, memory, seen = start, Memory(), []
    for now, observation in trace:
        decision = decide(spec, replicas, observation, now, memory)
        replicas, memory = decision.replicas, decision.memory
        seen.append(replicas)
    return seen


@pytest.mark.parametrize(
    ("demand", "expected"),
    [(0, 0), (1, 1), (10, 1), (11, 2), (30, 3), (1000, 3)],
)
def test_wanted_is_ceil_of_demand_over_target_within_bounds(demand: int, expected: int) -> None:
    assert wanted(SPEC, demand) == expected


def test_first_demand_activates_at_once() -> None:
    decision = decide(SPEC, 0, Observation(demand=1), now=0, memory=Memory())
    assert decision.replicas == 1 and "activating" in decision.reason


def test_a_burst_is_met_in_one_tick() -> None:
    assert decide(SPEC, 1, Observation(demand=35), now=0, memory=Memory()).replicas == 3
    assert decide(SPEC, 0, Observation(demand=25), now=0, memory=Memory()).replicas == 3


def test_down_waits_for_the_delay_and_steps_one_at_a_time() -> None:
    trace = [(t, Observation(demand=0)) for t in range(0, 200, 5)]
    replicas = run_trace(SPEC, trace, start=3)
    assert replicas[:12] == [3] * 12  # t=0..55: waiting out the delay
    assert replicas[12] == 2  # t=60: one step
    assert replicas[24] == 1 and replicas[23] == 2  # t=120: the next step, a full delay later
    assert replicas[36] == 0 and replicas[35] == 1  # t=180: idle, to zero


def test_zero_only_when_min_is_zero() -> None:
    spec = ScaleSpec(min_replicas=1, max_replicas=3, target=10, scale_down_delay=10)
    assert run_trace(spec, [(t, Observation(demand=0)) for t in range(0, 100, 5)], start=2)[-1] == 1


def test_never_below_pods_with_open_streams() -> None:
    trace = [(t, Observation(demand=3, busy_pods=3)) for t in range(0, 300, 5)]
    assert set(run_trace(SPEC, trace, start=3)) == {3}


def test_stale_data_never_leads_down() -> None:
    trace = [(t, Observation(demand=0, fresh=False)) for t in range(0, 300, 5)]
    assert set(run_trace(SPEC, trace, start=2)) == {2}
    up = decide(SPEC, 1, Observation(demand=30, fresh=False), now=0, memory=Memory())
    assert up.replicas == 3  # undercounted demand may still lead up


def test_below_min_and_above_max_are_corrected() -> None:
    spec = ScaleSpec(min_replicas=2, max_replicas=4, target=10, scale_down_delay=60)
    assert decide(spec, 0, Observation(demand=0), 0, Memory()).replicas == 2
    assert decide(spec, 9, Observation(demand=0), 0, Memory()).replicas == 4


def test_no_flapping_on_noisy_demand() -> None:
    """A synthetic trace: a busy hour whose demand wobbles around the target (seeded), then silence."""
    rng = random.Random(7)
    busy = [(float(t), Observation(demand=rng.choice([7, 9, 11, 12, 14, 8, 10]))) for t in range(0, 3600, 2)]
    quiet = [(float(t), Observation(demand=0)) for t in range(3600, 4200, 2)]
    replicas = run_trace(SPEC, busy + quiet)
    changes = sum(1 for a, b in itertools.pairwise(replicas) if a != b)
    assert replicas[0] in (1, 2) and max(replicas[:1800]) == 2
    assert changes <= 4, f"{changes} changes: the replica count flapped"
    assert replicas[-1] == 0


def test_a_scripted_day_scales_0_to_n_to_0() -> None:
    """A hand-written table of (time, demand) -> replicas, as the scaler would see it every 2 s."""
    table = [
        (0, 0, 0),
        (2, 1, 1),
        (4, 4, 1),
        (6, 26, 3),
        (8, 40, 3),
        (10, 12, 3),
        (70, 12, 2),  # demand asked for 2 since t=10: one step down after 60 s
        (72, 30, 3),  # a new burst: up at once
        (74, 0, 3),
        (133, 0, 3),
        (134, 0, 2),
        (194, 0, 1),
        (254, 0, 0),
        (300, 0, 0),
    ]
    replicas, memory = 0, Memory()
    for now, demand, expected in table:
        decision = decide(SPEC, replicas, Observation(demand=demand), float(now), memory)
        replicas, memory = decision.replicas, decision.memory
        assert replicas == expected, f"t={now} demand={demand}: {replicas} ({decision.reason}), want {expected}"


def test_steady_short_requests_between_ticks_keep_the_model_up() -> None:
    """One ~100 ms request every 3 s, never in flight when a tick looks: it used to be scaled to zero
    after every delay (a cold start on every 4th to 6th request); the front doors' started counts keep it."""
    spec = ScaleSpec(min_replicas=0, max_replicas=3, target=10, scale_down_delay=10)
    trace = [(float(t), Observation(demand=0, started=1 if t % 3 == 0 else 0)) for t in range(0, 120)]
    replicas = run_trace(spec, trace)
    assert replicas[0] == 1 and set(replicas) == {1}  # activated by the first start, never back to zero
    # Once the traffic stops, zero only after no request started for a whole delay.
    quiet = [*trace, *((float(t), Observation(demand=0)) for t in range(120, 160))]
    after = run_trace(spec, quiet)
    last_start = 117
    first_zero = 120 + after[120:].index(0)
    assert first_zero - last_start >= spec.scale_down_delay


def test_a_request_started_within_the_delay_holds_the_last_replica() -> None:
    memory = Memory(lower_since=0.0, last_started=50.0)
    held = decide(SPEC, 1, Observation(demand=0), now=100, memory=memory)
    assert held.replicas == 1 and "started within scale-down-delay" in held.reason
    assert decide(SPEC, 1, Observation(demand=0), now=111, memory=held.memory).replicas == 0


def tick(now: float, busy: float = 0.0, demand: int = 0, started: int = 0) -> tuple[float, Observation]:
    """A tick one second after the previous one: `busy` request-seconds of concurrency in that second."""
    return now, Observation(demand=demand, started=started, busy_seconds=busy, interval=1.0)


@pytest.mark.parametrize(
    ("samples", "now", "expected"),
    [
        ([tick(0, busy=5.0)], 0, 5.0),  # one second at an average of 5 in flight
        ([tick(0, busy=5.0), tick(1, busy=15.0)], 1, 10.0),  # (5 + 15) / 2 s
        ([tick(0, busy=30.0), tick(10, busy=0.0)], 10, 0.0),  # the short window (6 s for a 60 s delay) has moved on
        ([tick(0, busy=0.5)], 0, 0.5),  # a 500 ms request between two ticks is half a request in flight
    ],
)
def test_the_short_window_averages_the_front_doors_integral(
    samples: list[tuple[float, Observation]], now: float, expected: float
) -> None:
    memory = Memory()
    for at, observation in samples:
        average, memory = windowed(SPEC, memory, observation, at)
    assert average == pytest.approx(expected) and now == samples[-1][0]


def test_the_short_window_is_a_tenth_of_the_delay_and_never_under_six_seconds() -> None:
    assert short_window(ScaleSpec(scale_down_delay=60)) == 6
    assert short_window(ScaleSpec(scale_down_delay=300)) == 30
    assert short_window(ScaleSpec(scale_down_delay=3)) == 3  # never longer than the stable window itself


def test_concurrency_between_ticks_scales_out_at_once() -> None:
    """25 requests' worth of concurrency in the last second, none in flight when the tick looks."""
    decision = decide(SPEC, 1, tick(0, busy=25.0)[1], now=0, memory=Memory())
    assert decision.replicas == 3 and "over target" in decision.reason


def test_the_delay_is_the_stable_window_for_the_windowed_level() -> None:
    """Average 15 for ten seconds (2 replicas), then nothing: one step down only after the level stayed
    under 2 replicas for the whole delay, then zero a delay later (no request started since)."""
    spec = ScaleSpec(min_replicas=0, max_replicas=3, target=10, scale_down_delay=30)
    busy = [tick(t, busy=15.0, started=3) for t in range(10)]
    quiet = [tick(t) for t in range(10, 100)]
    replicas = run_trace(spec, [*busy, *quiet])
    assert replicas[:10] == [2] * 10
    # Down a full delay after the traffic stopped, and no later than the short window's lag on top of it
    # (not two delays: the stable window is the wait itself).
    assert 10 + spec.scale_down_delay <= replicas.index(1) <= 10 + short_window(spec) + spec.scale_down_delay
    assert replicas.index(0) - replicas.index(1) >= spec.scale_down_delay
