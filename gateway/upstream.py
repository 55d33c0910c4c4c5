"""The client side of the relay: one shared aiohttp session for requests to pods (or to the runtime).

Why aiohttp and not httpx here: httpcore's pool scans every pooled connection, probing idle sockets, on
each request and each response close, so relaying many concurrent streams costs O(connections) per
request; at 64 streams the front door spent most of its CPU in that scan and relayed a sixth of what it
relays now (bench/gateway.py). httpx stays for the front door's low-rate calls (scaler pushes, the apiserver).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp

UpstreamError = (aiohttp.ClientError, TimeoutError)
# Nothing accepts connections at the address: the process is not running (crashed, or restarting).
NotListening = aiohttp.ClientConnectorError


@dataclass(frozen=True)
class UpstreamTimeouts:
    connect: float = 5.0
    idle: float = 600.0  # longest silence between two chunks of an answer


class UpstreamResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives, each read all that has arrived since the last (no wrapper on the hot path)."""
        return self._response.content.iter_any()

    async def aread(self) -> bytes:
        return await self._response.read()

    async def aclose(self) -> None:
        self._response.close()  # drops the connection if the body was not read to its end


class Upstreams:
    def __init__(self, timeouts: UpstreamTimeouts, max_connections: int = 4096) -> None:
        self._timeouts = timeouts
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Upstreams:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=30, enable_cleanup_closed=True
        )
        timeout = aiohttp.ClientTimeout(total=None, connect=self._timeouts.connect, sock_read=self._timeouts.idle)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(self, method: str, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        """Send a request and return once the answer's head has arrived (its body streams after)."""
        if self._session is None:
            raise RuntimeError("Upstreams is used outside `async with`")
        response = await self._session.request(method, url, data=body, headers=dict(headers), allow_redirects=False)
        return UpstreamResponse(response)

    async def status(self, url: str, within: float) -> int:
        """The status a GET of `url` is answered with, given `within` seconds, its body dropped: the sidecar's
        check of its runtime's health, on the pool it relays on (no second HTTP client in every model pod)."""
        if self._session is None:
            raise RuntimeError("Upstreams is used outside `async with`")
        limit = aiohttp.ClientTimeout(total=within)
        async with self._session.get(url, timeout=limit, allow_redirects=False) as response:
            return response.status
