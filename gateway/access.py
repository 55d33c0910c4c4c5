"""One record per call to a model, from its arrival to its last byte: an access log line in JSON (key
name, model, status, tokens when the answer reports its usage, duration), the per-key metrics, and the
release of the key's place among its requests at once, exactly once, however the answer ends.

An ASGI middleware: only it sees the end of a streamed answer (the last body message sent). The handler
fills the record in (`record_of(request)`); the key itself never reaches it, only the key's name."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import GatewayMetrics

RECORD = "hearth.call"
TAIL = 2048  # bytes kept from the last `"usage"` on: the usage object is small


@dataclass
class CallRecord:
    started: float
    key: str | None = None
    model: str | None = None
    status: int = 0
    releases: list[Callable[[], None]] = field(default_factory=list)
    tail: bytes = b""


def keep_usage(record: CallRecord, chunk: bytes) -> None:
    """Keep the answer from its last `"usage"` on (bounded): one search per chunk, no copy of the rest. A
    usage object split between two reads of a whole answer is missed (its tokens are then unknown)."""
    at = chunk.rfind(b'"usage"')
    if at >= 0:
        record.tail = chunk[at : at + TAIL]
    elif record.tail and len(record.tail) < TAIL:
        record.tail += chunk[: TAIL - len(record.tail)]


def record_of(request: Request) -> CallRecord | None:
    record = request.scope.get(RECORD)
    return record if isinstance(record, CallRecord) else None


def usage_of(tail: bytes) -> tuple[int, int] | None:
    """(prompt, completion) tokens of the last `"usage": {...}` in what `keep_usage` kept, if any."""
    at = tail.rfind(b'"usage"')
    if at < 0:
        return None
    text = tail[at + len(b'"usage"') :].decode(errors="replace").lstrip()
    if not text.startswith(":"):
        return None
    try:
        usage, _ = json.JSONDecoder().raw_decode(text[1:].lstrip())
    except ValueError:
        return None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def access_logger() -> logging.Logger:
    """`hearth.access`: one JSON object per line on stdout, apart from the service's own log."""
    logger = logging.getLogger("hearth.access")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


class AccessLog:
    """Wraps the front door's app: a CallRecord for every `/v1/` request, finished when the answer ends."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: GatewayMetrics,
        logger: logging.Logger | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app, self.metrics, self.logger, self.clock = app, metrics, logger, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        record = CallRecord(started=self.clock())
        scope[RECORD] = record

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            elif message["type"] == "http.response.body":
                keep_usage(record, message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            record.status = record.status or 500  # the server's error answer comes after this middleware
            raise
        finally:
            self._finish(scope, record)

    def _finish(self, scope: Scope, record: CallRecord) -> None:
        for release in record.releases:
            release()
        seconds = self.clock() - record.started
        usage = usage_of(record.tail) if record.status == 200 else None
        status = record.status or 499  # no answer began: the client left
        if record.key is not None:
            self.metrics.key_requests.labels(record.key, str(status)).inc()
            if usage is not None:
                self.metrics.key_tokens.labels(record.key, "prompt").inc(usage[0])
                self.metrics.key_tokens.labels(record.key, "completion").inc(usage[1])
        if self.logger is not None:
            line = {
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "key": record.key,
                "model": record.model,
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status,
                "seconds": round(seconds, 4),
                "promptTokens": usage[0] if usage else None,
                "completionTokens": usage[1] if usage else None,
            }
            self.logger.info(orjson.dumps(line).decode())
