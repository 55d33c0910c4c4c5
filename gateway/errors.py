"""OpenAI-shaped errors: what every client of the gateway sees when something goes wrong."""

from __future__ import annotations

import json

from starlette.responses import Response

from common.bodies import BodyTimeout, BodyTooLarge


def openai_error(
    status: int, message: str, kind: str, code: str, retry_after: float | None = None, *, final: bool = False
) -> Response:
    """An error answer; `retry_after` invites a retry then, `final` tells clients not to retry at all (the
    OpenAI SDKs honour `x-should-retry: false`, and would otherwise retry a 5xx twice)."""
    body = error_body(message, kind, code)
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else {}
    if final:
        headers["x-should-retry"] = "false"
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_body(message: str, kind: str, code: str) -> bytes:
    """OpenAI's error object, as JSON."""
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def error_type(status: int) -> str:
    """OpenAI's error `type` for a status the gateway answers on its own (not the client's fault)."""
    return {429: "rate_limit_exceeded", 502: "upstream_error"}.get(status, "service_unavailable")


def body_refusal(refused: BodyTimeout | BodyTooLarge, max_bytes: int, within: float) -> Response:
    """The answer to a request body `read_bounded` refused: too slow (408) or too large (413)."""
    if isinstance(refused, BodyTimeout):
        return openai_error(
            408, f"request body not received within {within:g}s", "invalid_request_error", "body_timeout"
        )
    return openai_error(413, f"request body exceeds {max_bytes} bytes", "invalid_request_error", "body_too_large")
