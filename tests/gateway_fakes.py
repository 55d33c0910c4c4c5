"""Scripted upstreams for in-process tests of the front door and the sidecar (no sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit


class ScriptedResponse:
    """An answer's head at once; its body after `gate` is set, when there is a gate."""

    def __init__(
        self,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        chunks: tuple[bytes, ...] = (),
        gate: asyncio.Event | None = None,
    ):
        self.status_code = status
        self.headers = dict(headers or {"content-type": "application/json"})
        self.chunks = chunks
        self.gate = gate
        self.closed = False

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        if self.gate is not None:
            await self.gate.wait()
        for chunk in self.chunks:
            yield chunk

    async def aread(self) -> bytes:
        return b"".join(self.chunks)

    async def aclose(self) -> None:
        self.closed = True


class ScriptedUpstreams:
    """Each backend URL answers with its script: a response, or an exception raised at connect."""

    def __init__(self, scripts: dict[str, ScriptedResponse | Exception]) -> None:
        self.scripts = scripts
        self.sent: list[tuple[str, dict[str, Any]]] = []  # JSON bodies
        self.bodies: list[bytes] = []  # every body as sent
        self.headers: list[Mapping[str, str]] = []

    async def open(self, method: str, url: str, body: bytes, headers: Mapping[str, str]) -> ScriptedResponse:
        self.bodies.append(body)
        if body.startswith(b"{"):
            self.sent.append((url, json.loads(body)))
        self.headers.append(dict(headers))
        return self._script(url)

    async def status(self, url: str, within: float) -> int:
        """A health check: the status its script answers with (or its exception)."""
        return self._script(url).status_code

    def _script(self, url: str) -> ScriptedResponse:
        """The script of the backend `url` is on; an exception scripted there is raised."""
        parts = urlsplit(url)
        script = self.scripts[f"{parts.scheme}://{parts.netloc}"]
        if isinstance(script, Exception):
            raise script
        return script
