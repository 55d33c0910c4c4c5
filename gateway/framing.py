"""How a held answer that has already begun as a 200 says that it waits, how it fails, and how the model's
answer follows. Pure: bytes out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import error_body, error_type
from gateway.sse import sse_comment, sse_error


class Refused(Exception):
    """A call to a model ends without a backend: `status` and `code` say why (a start that failed, a model
    that rejects requests at zero, a full line, a hold that timed out, pods that fail), `retry_after` when
    to try again (None: do not, it will not heal by itself)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True)
class Framing:
    opening: Callable[[str], bytes]  # the model's key -> the first bytes, sent at once
    beat: Callable[[float], bytes]  # seconds held so far -> a heartbeat
    error: Callable[[Refused], bytes]
    media_type: str
    events: bool  # the answer is an SSE stream: relayed in checked events, an error answer as an event
    ready: Callable[[float], bytes] = lambda waited: b""  # seconds held -> bytes before the model's answer
    every: float | None = None  # seconds between beats (None: the model's heartbeat interval)


# A streaming request: SSE comments while held, an error event if the hold fails.
SSE = Framing(
    opening=lambda key: sse_comment(f"hearth: model {key} is starting; holding this request"),
    beat=lambda waited: sse_comment(f"hearth: still starting ({waited:.0f}s)"),
    error=lambda failed: sse_error(failed.message, error_type(failed.status), failed.code),
    media_type="text/event-stream",
    events=True,
)
# A whole-answer request kept alive through proxies' idle timeouts (hearth.dev/json-keepalive): spaces
# while held (JSON allows whitespace before a value), then the answer's body, or the error object. The
# status is committed as 200 before the answer is known: an error arrives as a 200 with an `error` body.
JSON_WHITESPACE = Framing(
    opening=lambda key: b" ",
    beat=lambda waited: b" ",
    error=lambda failed: error_body(failed.message, error_type(failed.status), failed.code),
    media_type="application/json",
    events=False,
)
