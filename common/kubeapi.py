"""Hearth's services talk to the apiserver through this one small async client: httpx on the service's own
event loop, a timeout on every call, JSON in and out.

Why not the official client's generated API classes: they are synchronous (each call would hold a thread,
and a hung call has no timeout unless every caller remembers `_request_timeout`), and the services need
only a handful of paths. Why not kubernetes_asyncio, lightkube or kr8s: a second generated client beside
the official one (which the CLI and the config loaders still need) for the same few GETs, PUTs and
PATCHes; httpx is already a core dependency. Authentication still comes from the official client's
loaders, so kubeconfig files (client certificates, tokens, exec plugins) and in-cluster ServiceAccount
tokens (re-read as the kubelet rotates them) work as they do for kubectl.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from common.kube import api_client as official_client

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"  # merges lists by key (conditions by type)


class ApiError(Exception):
    """The apiserver answered with an error status (its Status message in `message`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


def _error(response: httpx.Response, body: bytes) -> ApiError:
    try:
        message = str(json.loads(body).get("message") or response.reason_phrase)
    except (ValueError, AttributeError):
        message = body[:200].decode(errors="replace") or response.reason_phrase
    return ApiError(response.status_code, message)


def _ssl_context(configuration: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


class KubeAPI:
    """`get`, `post`, `put`, `patch` and `watch` on apiserver paths; errors raise ApiError."""

    def __init__(self, configuration: Any, timeout: float = 10.0, max_connections: int = 32) -> None:
        self._configuration = configuration
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=str(configuration.host),
            verify=_ssl_context(configuration),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections),
            proxy=configuration.proxy or None,
            trust_env=False,
        )

    @classmethod
    def connect(cls, kubeconfig: str | None = None, in_cluster: bool | None = None, timeout: float = 10.0) -> KubeAPI:
        """In-cluster (the pod's ServiceAccount) or from a kubeconfig, as `common.kube.api_client` decides."""
        return cls(official_client(kubeconfig, in_cluster).configuration, timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        bearer = self._configuration.auth_settings().get("BearerToken")
        if bearer and bearer.get("value"):
            headers["Authorization"] = str(bearer["value"])
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        content_type: str = "application/json",
        time_limit: float | None = None,
    ) -> Obj:
        content = json.dumps(body).encode() if body is not None else None
        response = await self._client.request(
            method,
            path,
            content=content,
            params=dict(params or {}),
            headers=self._headers(content_type if content is not None else None),
            timeout=time_limit or self.timeout,
        )
        if response.status_code >= 400:
            raise _error(response, response.content)
        answer: Obj = response.json() if response.content else {}
        return answer

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Obj:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Mapping[str, Any], params: Mapping[str, str | int] | None = None) -> Obj:
        return await self.request("POST", path, body, params)

    async def put(self, path: str, body: Mapping[str, Any], params: Mapping[str, str | int] | None = None) -> Obj:
        return await self.request("PUT", path, body, params)

    async def patch(
        self,
        path: str,
        body: Mapping[str, Any],
        params: Mapping[str, str | int] | None = None,
        content_type: str = MERGE_PATCH,
    ) -> Obj:
        return await self.request("PATCH", path, body, params, content_type=content_type)

    @asynccontextmanager
    async def watch(
        self, path: str, params: Mapping[str, str | int], read_timeout: float
    ) -> AsyncIterator[AsyncIterator[Obj]]:
        """A watch stream's events, one JSON object per line. `read_timeout` bounds the silence between two
        lines (bookmarks keep a healthy watch talking), so a dead connection is noticed."""
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        query = {**params, "watch": "true"}
        async with self._client.stream("GET", path, params=query, headers=self._headers(), timeout=timeout) as response:
            if response.status_code >= 400:
                raise _error(response, await response.aread())

            async def events() -> AsyncIterator[Obj]:
                async for line in response.aiter_lines():
                    if line.strip():
                        event: Obj = json.loads(line)
                        yield event

            yield events()
