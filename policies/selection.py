"""Which InferenceRuntime serves a pod: pinned by name, or the best one of the preferred vendors."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from policies.annotations import PREFIX, TEMPLATE_WHERE, PodSpec
from policies.errors import ContractError, Problem
from policies.runtime import InferenceRuntime


def select_runtime(
    pod: PodSpec,
    runtimes: Sequence[InferenceRuntime],
    where: str = TEMPLATE_WHERE,
    has_room: Callable[[InferenceRuntime], bool] | None = None,
) -> InferenceRuntime:
    """`runtime` pins one by name; `vendors` takes the highest-priority runtime of the first vendor that
    has any; with neither, every vendor is acceptable. An equal-priority tie is an error, not a coin toss.

    With `has_room` (vendor by capacity, for a pod being created): the first listed vendor whose best
    runtime has a free accelerator for the pod now; when none has, the first vendor, as without it. A
    vendor after the first whose runtimes tie is passed over (the first vendor's tie is the error)."""
    available = ", ".join(sorted(f"{r.name} ({r.spec.vendor})" for r in runtimes)) or "none"
    if pod.runtime is not None:
        for runtime in runtimes:
            if runtime.name == pod.runtime:
                return runtime
        raise ContractError(
            [
                Problem(
                    f'{where}["{PREFIX}runtime"]',
                    pod.runtime,
                    f"names no InferenceRuntime; available: {available}",
                    "apply that InferenceRuntime (kubectl get inferenceruntimes) or pin an available one",
                )
            ]
        )
    if pod.vendors:
        groups = [[r for r in runtimes if r.spec.vendor == v] for v in pod.vendors]
    else:  # no preference: each vendor's best, the best of them first
        vendors = sorted({r.spec.vendor for r in runtimes})
        groups = [list(runtimes)] + ([[r for r in runtimes if r.spec.vendor == v] for v in vendors] if has_room else [])
    groups = [g for g in groups if g]
    if groups and has_room is not None:
        first = _best(groups[0])
        if has_room(first):
            return first
        for candidates in groups[1:]:
            try:
                other = _best(candidates)
            except ContractError:
                continue
            if has_room(other):
                return other
        return first
    if groups:
        return _best(groups[0])
    wanted = ",".join(pod.vendors) if pod.vendors else "(any)"
    raise ContractError(
        [
            Problem(
                f'{where}["{PREFIX}vendors"]',
                wanted,
                f"no InferenceRuntime of these vendors exists; available: {available}",
                "apply a runtime for one of them, or list a vendor that has one",
            )
        ]
    )


def _best(candidates: list[InferenceRuntime]) -> InferenceRuntime:
    ranked = sorted(candidates, key=lambda r: (-r.spec.priority, r.name))
    top = ranked[0]
    if len(ranked) > 1 and ranked[1].spec.priority == top.spec.priority:
        other = ranked[1]
        if other.spec.vendor == top.spec.vendor:
            tie = f"tie for vendor {top.spec.vendor} at the same priority"
            fix = "give one of them a higher spec.priority, or pin one with hearth.dev/runtime"
        else:  # no vendor preference given: any vendor would do, and two are equally good
            tie = (
                f"tie between vendors {top.spec.vendor} and {other.spec.vendor} at the same priority, "
                "with no vendor preferred"
            )
            fix = (
                f"list the vendors in order of preference with {PREFIX}vendors (e.g. "
                f'"{top.spec.vendor},{other.spec.vendor}"), give one runtime a higher spec.priority, or pin one '
                f"with {PREFIX}runtime"
            )
        raise ContractError(
            [Problem(f"InferenceRuntimes {top.name} and {other.name}", f"priority {top.spec.priority}", tie, fix)]
        )
    return top
