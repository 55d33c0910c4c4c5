"""One record per call to a model, from its arrival to its last byte, and the one place its outcome is
counted: the model's and the key's metrics, an access log line in JSON (key name, model, status, error
code, tokens when the answer reports its usage, duration), and the release of the key's place among its
requests at once, exactly once, however the answer ends.

The front door's model routes fill their record in as they answer (gateway.frontdoor); the other `/v1/`
routes (model lists, unknown URLs) get theirs from the `AccessLog` middleware, which reads only the
status of the answer's head. The key itself never reaches a record, only the key's name."""

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


TAIL_READS = 4  # reads kept from an answer's end: its usage (the last event, or a body's end) is in them


@dataclass
class CallRecord:
    started: float
    key: str | None = None
    model: str | None = None
    status: int = 0  # the HTTP status sent (0: none, the client left first)
    outcome: int | None = None  # what the call came to when the status sent cannot say (a held stream's)
    code: str | None = None  # why it was refused or failed (hearth_gateway_rejections_total's reason)
    releases: list[Callable[[], None]] = field(default_factory=list)
    tail: bytes = b""  # the answer's last bytes (gateway.relay)

    @property
    def counted(self) -> int:
        """The status the metrics count: the outcome, else the status sent, else 499 (the client left)."""
        return self.outcome or self.status or 499


def record_of(request: Request) -> CallRecord | None:
    record = request.scope.get(RECORD)
    return record if isinstance(record, CallRecord) else None


def usage_of(tail: bytes) -> tuple[int, int] | None:
    """(prompt, completion) tokens of the last `"usage": {...}` in an answer's last reads (gateway.relay), if any."""
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


class Outcomes:
    """Counts each call's outcome once, from its record."""

    def __init__(
        self, metrics: GatewayMetrics, logger: logging.Logger | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.metrics, self.logger, self.clock = metrics, logger, clock

    def finish(self, record: CallRecord, method: str, path: str) -> None:
        for release in record.releases:
            release()
        seconds = self.clock() - record.started
        status = record.counted
        usage = usage_of(record.tail) if status == 200 else None
        if record.model is not None:
            self.metrics.requests.labels(record.model, str(status)).inc()
            if record.code is not None:
                self.metrics.rejections.labels(record.model, record.code).inc()
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
                "method": method,
                "path": path,
                "status": status,
                "error": record.code,
                "seconds": round(seconds, 4),
                "promptTokens": usage[0] if usage else None,
                "completionTokens": usage[1] if usage else None,
            }
            self.logger.info(orjson.dumps(line).decode())


class AccessLog:
    """Wraps the app of the front door's other routes: a CallRecord for every `/v1/` request, finished
    when the answer ends."""

    def __init__(self, app: ASGIApp, outcomes: Outcomes) -> None:
        self.app, self.outcomes = app, outcomes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        record = CallRecord(started=self.outcomes.clock())
        scope[RECORD] = record

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            record.status = record.status or 500  # the server's error answer comes after this middleware
            raise
        finally:
            self.outcomes.finish(record, scope["method"], scope["path"])
