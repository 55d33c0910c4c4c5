"""Making room, pure: which idle replicas of other models to retire so that a waking model's pod can be
placed. No I/O, no clock of its own (the caller passes ages in seconds).

The rules (README, "Many models, few accelerators"):
- Only for a pod that fits no node with the accelerators it needs free, counting those that are already
  being freed (terminating pods, replicas retired in an earlier pass) as free: room on its way is not made twice.
- Victims hold the accelerator on a node where the waiting pod fits (nodeSelector, tolerations); they are
  replicas of another Hearth model that is idle (no request held or in flight on the model beyond what its
  other replicas carry, none in flight on the replica) for at least `grace`, resident for at least
  `residency` (no thrashing), of a priority no higher than the waiting model's, and above their model's
  min-replicas.
- Least recently used first; the node that needs the fewest retirements wins, then the one whose victims
  have been idle longest.
- At most `swaps_per_minute` retirements per accelerator resource in any minute; beyond it the pod waits.
- Waiting pods are served by priority, then in the order they were created.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from policies import Capacity, fits


@dataclass(frozen=True)
class Rules:
    grace: float = 30.0  # seconds a replica must have been idle
    residency: float = 120.0  # seconds a replica must have been up
    swaps_per_minute: int = 6  # retirements per accelerator resource per minute


@dataclass(frozen=True)
class Waiter:
    pod: str  # namespace/name
    model: str
    priority: int
    needs: Mapping[str, int]
    selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, object], ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A replica that could be retired: the caller has checked it is Ready, idle and not needed."""

    pod: str
    model: str
    node: str
    holds: Mapping[str, int]
    priority: int
    idle_for: float  # seconds since its model last had a request
    resident_for: float  # seconds since it started
    spare: int  # replicas its model can give up (current - max(min-replicas, what its demand asks))


@dataclass(frozen=True)
class Retire:
    victim: Candidate
    waiter: Waiter
    node: str


@dataclass(frozen=True)
class Stuck:
    waiter: Waiter
    why: str


@dataclass
class Plan:
    retire: list[Retire] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    placed: list[Waiter] = field(default_factory=list)  # room is free or on its way


def _eligible(c: Candidate, w: Waiter, rules: Rules) -> str | None:
    """Why the candidate may not be retired for this waiter, or None."""
    if c.model == w.model:
        return "its own replica"
    if c.priority > w.priority:
        return f"held by {c.model} of higher priority {c.priority}"
    if c.idle_for < rules.grace:
        return f"held by {c.model}, used within the last {rules.grace:g}s"
    if c.resident_for < rules.residency:
        return f"held by {c.model}, up less than the minimum residency of {rules.residency:g}s"
    return None


def plan(
    view: Capacity,
    waiters: Sequence[Waiter],
    candidates: Iterable[Candidate],
    rules: Rules,
    recent_swaps: Mapping[str, int],
    incoming: Mapping[tuple[str, str], int] | None = None,
) -> Plan:
    """`recent_swaps`: retirements per resource in the last minute; `incoming`: accelerators per (node,
    resource) that earlier passes retired and the view does not show terminating yet."""
    result = Plan()
    budget: dict[tuple[str, str], int] = {}
    for node, resource in view.pools():
        extra = (incoming or {}).get((node, resource), 0)
        budget[(node, resource)] = view.free(node, resource) + view.freeing.get((node, resource), 0) + extra
    pool = sorted(candidates, key=lambda c: (c.priority, -c.idle_for, c.pod))
    spare = {c.model: c.spare for c in pool}
    swaps = dict(recent_swaps)
    taken: set[str] = set()
    for waiter in sorted(waiters, key=lambda w: -w.priority):  # stable: creation order within a priority
        nodes = [n for n in sorted(view.nodes) if fits(view.nodes[n], waiter.selector, waiter.tolerations)]
        ready = [n for n in nodes if all(budget.get((n, r), 0) >= k for r, k in waiter.needs.items())]
        if ready:
            _claim(budget, ready[0], waiter.needs)
            result.placed.append(waiter)
            continue
        best: tuple[tuple[int, float], str, list[Candidate]] | None = None
        reasons: list[str] = []
        for node in nodes:
            chosen = _victims(node, waiter, pool, budget, spare, taken, rules, reasons)
            if chosen is None:
                continue
            rank = (len(chosen), -min((c.idle_for for c in chosen), default=0.0))
            if best is None or rank < best[0]:
                best = (rank, node, chosen)
        if best is None:
            result.stuck.append(Stuck(waiter, _why(waiter, nodes, reasons)))
            continue
        _, node, chosen = best
        over = [r for r in waiter.needs if swaps.get(r, 0) + len(chosen) > rules.swaps_per_minute]
        if over:
            why = (
                f"swap budget spent: {rules.swaps_per_minute} retirements of {over[0]} per minute"
                if rules.swaps_per_minute
                else "making room is off (--swaps-per-minute=0)"
            )
            result.stuck.append(Stuck(waiter, why))
            continue
        for victim in chosen:
            result.retire.append(Retire(victim, waiter, node))
            taken.add(victim.pod)
            spare[victim.model] -= 1
            for resource, count in victim.holds.items():
                budget[(node, resource)] = budget.get((node, resource), 0) + count
        for resource in waiter.needs:
            swaps[resource] = swaps.get(resource, 0) + len(chosen)
        _claim(budget, node, waiter.needs)
    return result


def _claim(budget: dict[tuple[str, str], int], node: str, needs: Mapping[str, int]) -> None:
    for resource, count in needs.items():
        budget[(node, resource)] = budget.get((node, resource), 0) - count


def _victims(
    node: str,
    waiter: Waiter,
    pool: Sequence[Candidate],
    budget: Mapping[tuple[str, str], int],
    spare: Mapping[str, int],
    taken: set[str],
    rules: Rules,
    reasons: list[str],
) -> list[Candidate] | None:
    """The fewest replicas on `node`, least recently used first, whose retirement frees what the waiter
    needs; None when the node cannot give it."""
    short = {r: k - budget.get((node, r), 0) for r, k in waiter.needs.items()}
    chosen: list[Candidate] = []
    given: dict[str, int] = {}
    for c in pool:
        if all(v <= 0 for v in short.values()):
            break
        if c.node != node or c.pod in taken or not any(short.get(r, 0) > 0 for r in c.holds):
            continue
        why = _eligible(c, waiter, rules)
        if why is None and spare.get(c.model, 0) - given.get(c.model, 0) <= 0:
            why = f"held by {c.model} at its min-replicas or needed for its demand"
        if why is not None:
            reasons.append(why)
            continue
        chosen.append(c)
        given[c.model] = given.get(c.model, 0) + 1
        for resource, count in c.holds.items():
            if resource in short:
                short[resource] -= count
    return chosen if all(v <= 0 for v in short.values()) else None


def _why(waiter: Waiter, nodes: list[str], reasons: list[str]) -> str:
    wanted = ", ".join(f"{k} {r}" for r, k in sorted(waiter.needs.items()))
    if not nodes:
        return f"no Ready node it fits on (nodeSelector, taints) offers {wanted}"
    detail = "; ".join(dict.fromkeys(reasons)) or "held by pods Hearth does not scale, or by models with traffic"
    return f"no node has {wanted} free and nothing can be retired: {detail}"[:900]
