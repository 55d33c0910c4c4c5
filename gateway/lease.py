"""In-flight accounting that cannot leak: a Lease counts one request on everything that counts it (a
backend, its model, a gauge; the sidecar's drain) and gives every count back exactly once, however the
request ends. Like Knative's breaker reservation, the release is owned by one object, not by each path.

Each lease has one owner that gives it back in one place: the router while it tries a backend, then the
relayed answer (`async with answer:` in gateway.relay), the hold while a request waits (`with held:`).
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Gauge


class Counted(Protocol):
    """Anything that counts requests in flight."""

    def enter(self) -> None: ...

    def leave(self) -> None: ...


class Lease:
    """Counts a request on `counted` now; `release()` gives each count back, the first time only."""

    def __init__(self, *counted: Counted) -> None:
        self._counted = counted
        self.released = False
        for count in counted:
            count.enter()

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        for count in self._counted:
            count.leave()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class GaugeCount:
    """A Prometheus gauge (child) as a Counted."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def enter(self) -> None:
        self._gauge.inc()

    def leave(self) -> None:
        self._gauge.dec()
