"""Server-sent events as the front door writes them: comments (heartbeats) and OpenAI-shaped error events,
the only way to report an error once a 200 stream has begun."""

from __future__ import annotations

import json
from typing import Any


def sse_comment(text: str) -> bytes:
    """A comment line: clients and SDKs ignore it, proxies and load balancers see traffic."""
    return f": {text}\n\n".encode()


def sse_error(message: str, kind: str, code: str) -> bytes:
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def error_message(detail: str) -> str | None:
    """The message of an upstream error body: OpenAI's `error.message`, a bare `message`, or the text."""
    try:
        data: Any = json.loads(detail)
    except ValueError:
        return detail.strip()[:500] or None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return None
