"""Telling the scaler at once that a model at zero has demand."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from common.callers import CallerToken
from gateway.metrics import GatewayMetrics

log = logging.getLogger("hearth.frontdoor")


class Activator:
    """Tells the scaler at once that a model at zero has demand (a push, not the next poll).

    The push goes to every scaler it knows of (only the leader accepts; standbys answer 409) and is retried
    with backoff until one accepts it or `retry_for` seconds pass (a leader election or a scaler that has
    not seen the Deployment yet is a matter of seconds). One push per model is in flight at a time.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        scalers: Callable[[], list[str]],
        metrics: GatewayMetrics,
        retry_for: float = 30.0,
        token: CallerToken | None = None,
    ) -> None:
        self._client = client
        self._token = token  # this front door's ServiceAccount token: the scalers answer only front doors
        self._scalers = scalers
        self._metrics = metrics
        self._retry_for = retry_for
        self._pending: dict[str, asyncio.Task[None]] = {}

    def poke(self, key: str) -> None:
        if key in self._pending or not self._scalers():
            return
        self._pending[key] = asyncio.ensure_future(self._push(key))

    async def settle(self) -> None:
        """Wait for the pushes in flight (each ends accepted or given up on within `retry_for`)."""
        await asyncio.gather(*list(self._pending.values()))

    async def _post(self, url: str, key: str) -> int:
        try:
            headers = self._token.headers() if self._token is not None else {}
            response = await self._client.post(f"{url}/activate", json={"model": key}, timeout=2.0, headers=headers)
        except httpx.HTTPError as exc:
            log.info("activation push of %s to %s failed: %s", key, url, exc)
            return 0
        return response.status_code

    async def _push(self, key: str) -> None:
        started = time.monotonic()
        deadline = started + self._retry_for
        delay = 0.1
        try:
            while True:
                urls = self._scalers()
                statuses = await asyncio.gather(*(self._post(u, key) for u in urls))
                if 202 in statuses:
                    self._metrics.activation_pushes.labels(key, "accepted").inc()
                    self._metrics.activation_push.labels(key).observe(time.monotonic() - started)
                    return
                if time.monotonic() + delay > deadline:
                    self._metrics.activation_pushes.labels(key, "unacknowledged").inc()
                    log.warning("no scaler accepted the activation of %s (answers %s); its tick will", key, statuses)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        finally:
            self._pending.pop(key, None)
