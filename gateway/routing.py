"""Routing one request: the least-loaded ready backend of its model that answers, each attempt under its
own lease. A backend that cannot be connected to, or answers that it is draining, is skipped (its lease
released at once) and the next one is tried, up to `retries` more. When every backend tried failed (not
merely drained), the caller learns it (BackendsFailed): a pod that looks ready but fails is not the same
as no pod at all, and must not be waited for like one."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.lease import GaugeCount, Lease
from gateway.metrics import GatewayMetrics
from gateway.relay import Answer
from gateway.table import Backend, ModelState, ModelTable
from gateway.upstream import UpstreamError, Upstreams

log = logging.getLogger("hearth.frontdoor")
DRAINING_HEADER = "x-hearth-draining"


@dataclass(frozen=True)
class Outgoing:
    """What is sent to a backend: the request's path, its (rewritten) body and the headers passed on."""

    path: str
    body: bytes
    headers: Mapping[str, str]


class BackendsFailed(Exception):
    """Every backend tried failed before sending a byte; the message names the last and why."""


class Router:
    def __init__(self, table: ModelTable, upstreams: Upstreams, metrics: GatewayMetrics, retries: int) -> None:
        self.table = table
        self.upstreams = upstreams
        self.metrics = metrics
        self.retries = retries

    def lease(self, state: ModelState, backend: Backend) -> Lease:
        return Lease(backend, state, GaugeCount(self.metrics.in_flight.labels(state.key)))

    async def open(self, state: ModelState, outgoing: Outgoing) -> Answer | None:
        """An upstream answer's head, which owns its lease from then on; None when no backend is ready (or
        all are draining); BackendsFailed when those tried failed. An attempt's lease that no answer takes
        over is released here, once."""
        tried: set[str] = set()
        failure: str | None = None
        while len(tried) <= self.retries:
            backend = self.table.pick(state, tried)
            if backend is None:
                break
            tried.add(backend.url)
            lease = self.lease(state, backend)
            answer: Answer | None = None
            try:
                response = await self.upstreams.open(
                    "POST", backend.url + outgoing.path, outgoing.body, outgoing.headers
                )
                if response.status_code == 503 and response.headers.get(DRAINING_HEADER):
                    await response.aclose()
                    continue
                answer = Answer(response, lease, backend.name, outgoing.path)
                return answer
            except UpstreamError as exc:
                failure = f"{backend.name}: {type(exc).__name__}"
                log.info("backend %s of %s failed before any byte (%s); trying another", backend.name, state.key, exc)
            finally:
                if answer is None:  # not handed over: this attempt's lease ends here
                    lease.release()
        if failure is not None:
            raise BackendsFailed(failure)
        return None
