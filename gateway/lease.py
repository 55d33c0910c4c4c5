"""In-flight accounting that cannot leak: a Lease counts one request on everything that counts it (a
backend, its model, a gauge; the sidecar's drain) and gives every count back exactly once, however the
request ends. Like Knative's breaker reservation, the release is owned by one object, not by each path.

A relayed answer is a LeasedStream whose body releases the lease when it ends (before the response's last
message: a client that has read the whole answer never sees it still counted); the LeasedStream releases
it again, a no-op by then, when the ASGI response ends, because a body generator that never starts
(uvicorn refusing a relayed header value, a client gone before the first byte) never runs its `finally`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from prometheus_client import Gauge
from starlette.types import Receive, Scope, Send

from gateway.streaming import PromptStreamingResponse
from gateway.upstream import UpstreamResponse


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


class LeasedStream(PromptStreamingResponse):
    """A streamed answer that owns its lease and its upstream response: both end when the response does."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        lease: Lease,
        upstream: UpstreamResponse | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        super().__init__(content, status_code=status_code, headers=headers, media_type=media_type)
        self.lease = lease
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.upstream is not None:
                await self.upstream.aclose()
            self.lease.release()


class GaugeCount:
    """A Prometheus gauge (child) as a Counted."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def enter(self) -> None:
        self._gauge.inc()

    def leave(self) -> None:
        self._gauge.dec()
