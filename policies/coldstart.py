"""Cold starts people can see and plan for (pure): where a waking model is now, how long its last starts
took stage by stage, and how long the next one will likely take.

- `progress_of`: the stage of the most advanced pod of a model (from the pods the front door watches),
  in words a person reads in a chat UI: waiting for a node, fetching weights, starting, loading, ready.
- `stages_of`: a pod's start, stage by stage, from the timestamps Kubernetes keeps on it (created, the
  PodScheduled condition, the hearth-fetch init container, the model container, the Ready condition).
- `predict`: the next cold start's duration from the recent ones of the same kind (the node's cache warm
  or cold): their median, robust to one slow outlier. The scaler records each start in its condition
  (`starts`), so a new leader keeps the history, and publishes the prediction there (`eta`).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.modelcache import FETCH_CONTAINER
from policies.objects import is_ready
from policies.values import api_time

KEPT = 5  # recent starts of each kind kept and predicted from
WARM, COLD = "w", "c"  # the node's cache held the model (or the model is not cached), or it was fetched
FETCHED_AFTER = 3.0  # a hearth-fetch shorter than this found the model in place (it only checks the files)


@dataclass(frozen=True)
class Progress:
    stage: str  # waking, scheduling, fetching, starting, loading, ready
    node: str | None
    text: str


_ORDER = {"waking": 0, "scheduling": 1, "fetching": 2, "starting": 3, "loading": 4, "ready": 5}


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for item in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(item, Mapping) and item.get("type") == kind:
            return item
    return {}


def _fetch(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for item in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if isinstance(item, Mapping) and item.get("name") == FETCH_CONTAINER:
            return item
    return {}


def _fetch_ahead(pod: Mapping[str, Any]) -> bool:
    """The pod's fetcher has not finished: running, or still to start. A pod on its node whose sandbox is
    being made once showed "starting its containers", then "fetching", then "starting" again: stages went
    back. The fetch is the first thing it does there, so its stage is fetching until the fetch ends."""
    spec = (pod.get("spec") or {}).get("initContainers") or []
    fetches = any(isinstance(c, Mapping) and c.get("name") == FETCH_CONTAINER for c in spec)
    state = _fetch(pod).get("state") or {}
    return "running" in state or (fetches and "terminated" not in state)


def pod_progress(pod: Mapping[str, Any], model: str) -> Progress:
    node = (pod.get("spec") or {}).get("nodeName") or None
    if is_ready(pod):
        return Progress("ready", node, f"{model} is ready on {node}")
    if node is None:
        why = str(_condition(pod, "PodScheduled").get("message") or "")
        waiting = f"waiting for a node with a free accelerator ({why[:120]})" if why else "waiting for a node"
        return Progress("scheduling", None, f"{model}: {waiting}")
    if _fetch_ahead(pod):
        return Progress("fetching", node, f"{model}: fetching its weights into the cache of {node}")
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    running = [s for s in statuses if isinstance(s, Mapping) and "running" in (s.get("state") or {})]
    if not running:
        return Progress("starting", node, f"{model}: starting its containers on {node}")
    return Progress("loading", node, f"{model}: loading the model on {node}")


def progress_of(model: str, desired: int, pods: Sequence[Mapping[str, Any]]) -> Progress:
    """Where a model at zero is on its way up: its most advanced live pod's stage, or waking."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not live:
        text = f"{model}: asking for a replica" if desired == 0 else f"{model}: creating its pod"
        return Progress("waking", None, text)
    return max((pod_progress(p, model) for p in live), key=lambda p: _ORDER[p.stage])


def stages_of(pod: Mapping[str, Any]) -> dict[str, float] | None:
    """A ready pod's start in seconds per stage (schedule, fetch, start, load) and `total`; None while it
    is not ready or a timestamp is missing. `kind` (WARM or COLD) is whether a fetch downloaded."""
    created = api_time((pod.get("metadata") or {}).get("creationTimestamp"))
    scheduled = api_time(_condition(pod, "PodScheduled").get("lastTransitionTime"))
    ready_at = api_time(_condition(pod, "Ready").get("lastTransitionTime"))
    if not is_ready(pod) or created is None or scheduled is None or ready_at is None:
        return None
    done = (_fetch(pod).get("state") or {}).get("terminated") or {}
    fetch_start, fetch_end = api_time(done.get("startedAt")), api_time(done.get("finishedAt"))
    fetch = (fetch_end - fetch_start).total_seconds() if fetch_start and fetch_end else 0.0
    model_started: dt.datetime | None = None
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        started = api_time(((status.get("state") or {}).get("running") or {}).get("startedAt"))
        if started is not None and (model_started is None or started < model_started):
            model_started = started
    after_fetch = fetch_end or scheduled
    start = max(0.0, ((model_started or after_fetch) - after_fetch).total_seconds())
    load = max(0.0, (ready_at - (model_started or after_fetch)).total_seconds())
    return {
        "schedule": max(0.0, (scheduled - created).total_seconds()),
        "fetch": fetch,
        "start": start,
        "load": load,
        "total": max(0.0, (ready_at - created).total_seconds()),
    }


def kind_of(stages: Mapping[str, float]) -> str:
    return COLD if stages.get("fetch", 0.0) >= FETCHED_AFTER else WARM


def format_history(history: Sequence[tuple[str, float]]) -> str:
    """`starts` in the scaler's condition: `w41,c96,w39` (kind and whole seconds), the last KEPT of each kind."""
    kept: list[tuple[str, float]] = []
    for kind in (WARM, COLD):
        kept += [item for item in history if item[0] == kind][-KEPT:]
    ordered = [item for item in history if item in kept]
    return ",".join(f"{kind}{round(seconds)}" for kind, seconds in ordered)


def parse_history(text: str | None) -> list[tuple[str, float]]:
    found = []
    for raw in (text or "").split(","):
        part = raw.strip()
        if len(part) > 1 and part[0] in (WARM, COLD) and part[1:].isdigit():
            found.append((part[0], float(part[1:])))
    return found


def predict(history: Sequence[tuple[str, float]], kind: str | None = None) -> float | None:
    """The next start's likely duration: the median of the recent starts of `kind` (None: the kind seen
    most recently), else of all; None before the first."""
    if not history:
        return None
    kind = kind or history[-1][0]
    same = [seconds for k, seconds in history if k == kind][-KEPT:]
    return float(statistics.median(same or [seconds for _, seconds in history][-KEPT:]))


def eta_for(fields: Mapping[str, str], stage: str) -> float | None:
    """The start's predicted length as the front door uses it: the scaler's `eta` (the kind of start seen
    last), or its `cold-eta` once this start is seen fetching weights (the chosen node's cache is cold)."""
    text = fields.get("cold-eta") if stage == "fetching" and fields.get("cold-eta") else fields.get("eta")
    return float(text) if text and text.isdigit() else None
