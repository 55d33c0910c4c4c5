"""Demand per model, read from every front door (their sum) and from every model pod's sidecar."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from common.callers import CallerToken
from policies import sidecar_url


@dataclass
class Demand:
    held: int = 0
    gateway_in_flight: int = 0
    sidecar_in_flight: int = 0
    busy_pods: int = 0
    started: int = 0  # requests started since the previous collection, over every front door
    busy_seconds: float = 0.0  # held + in flight integrated since the previous collection, idem
    interval: float = 0.0  # seconds since the previous collection
    per_pod: dict[str, int] = field(default_factory=dict)
    answering_pods: int = 0  # pods whose sidecar answered

    @property
    def total(self) -> int:
        # A request in flight through a front door is also in flight at its pod's sidecar: count it once.
        return self.held + max(self.gateway_in_flight, self.sidecar_in_flight)


def _seconds(value: Any) -> float:
    """A duration from another component's JSON: a finite non-negative number, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def _count(value: Any) -> int:
    """A count from another component's JSON: a non-negative int, else 0 (a broken peer adds no demand)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class DemandCollector:
    """`front_doors` answers the front doors' base URLs at each call (fixed, or the pods found by label), so
    a replica that starts or goes away is counted from the next tick on. With `require_front_door`, a
    tick that finds none is not fresh: no scale-down on the word of nobody.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        front_doors: Callable[[], list[str]],
        timeout: float = 0.5,
        require_front_door: bool = False,
        token: CallerToken | None = None,
        leaving: Callable[[], set[str]] = set,
    ) -> None:
        self.client = client
        # Front doors being deleted: still read (they drain: their held and in-flight requests are demand),
        # but one that has stopped answering does not make the tick stale.
        self.leaving = leaving
        self.token = token  # the scaler's ServiceAccount token: front doors answer /demand only to it
        self.front_doors = front_doors
        self.timeout = timeout
        self.require_front_door = require_front_door
        self._counts: dict[tuple[str, str], tuple[float, float]] = {}  # (started, busySeconds) as last read
        self._collected: float | None = None

    async def _get(self, url: str, headers: dict[str, str]) -> dict[str, Any] | None:
        try:
            response = await self.client.get(url, timeout=self.timeout, headers=headers)
            if response.status_code != 200:
                return None
            data = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _increase(
        self, url: str, key: str, counts: tuple[float, float], seen: dict[tuple[str, str], tuple[float, float]]
    ) -> tuple[float, float]:
        """How much a front door's running counts (requests started, busy seconds) grew since the last read:
        nothing the first time they are read (their history is not this tick's), all of them after the
        front door restarted (they fell)."""
        seen[(url, key)] = counts
        last = self._counts.get((url, key))
        if last is None:
            return 0.0, 0.0
        if counts[0] < last[0] or counts[1] < last[1]:
            return counts
        return counts[0] - last[0], counts[1] - last[1]

    async def collect(self, pods_by_model: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, Demand], bool]:
        """Demand per model, and whether every source answered."""
        sidecars: list[tuple[str, str]] = []
        gateway_urls = self.front_doors()
        own = self.token.headers() if self.token is not None else {}
        reads = [self._get(f"{u}/demand", own) for u in gateway_urls]
        for key, pods in pods_by_model.items():
            for pod in pods:
                url = sidecar_url(pod)
                if url is not None:
                    sidecars.append((key, url))
                    reads.append(self._get(f"{url}/demand", {}))
        answers = await asyncio.gather(*reads)
        leaving = self.leaving() if gateway_urls else set()
        sources = [*gateway_urls, *(url for _, url in sidecars)]
        answered = all(a is not None or u in leaving for u, a in zip(sources, answers, strict=True))
        fresh = answered and (bool(set(gateway_urls) - leaving) or not self.require_front_door)
        demand: dict[str, Demand] = {key: Demand() for key in pods_by_model}
        now = time.monotonic()
        interval = now - self._collected if self._collected is not None else 0.0
        self._collected = now
        seen: dict[tuple[str, str], tuple[float, float]] = {}
        for url, answer in zip(gateway_urls, answers[: len(gateway_urls)], strict=True):
            models = (answer or {}).get("models")
            for key, counts in models.items() if isinstance(models, dict) else ():
                if not isinstance(counts, dict):
                    continue
                entry = demand.setdefault(str(key), Demand())
                entry.held += _count(counts.get("held"))
                entry.gateway_in_flight += _count(counts.get("inFlight"))
                running = (float(_count(counts.get("started"))), _seconds(counts.get("busySeconds")))
                started, busy = self._increase(url, str(key), running, seen)
                entry.started += int(started)
                entry.busy_seconds += busy
                entry.interval = interval
            if answer is None:  # keep its last counts: a front door that missed a tick is not a new one
                seen.update({k: v for k, v in self._counts.items() if k[0] == url})
        self._counts = seen
        for (key, url), answer in zip(sidecars, answers[len(gateway_urls) :], strict=True):
            in_flight = _count((answer or {}).get("inFlight"))
            entry = demand[key]
            entry.sidecar_in_flight += in_flight
            entry.per_pod[url] = in_flight
            entry.busy_pods += 1 if in_flight > 0 else 0
            entry.answering_pods += 1 if answer is not None else 0
        return demand, fresh
