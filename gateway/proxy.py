"""The headers a proxy passes on: all but the hop-by-hop ones (and `Expect`, answered here), and only values
the server can send."""

from __future__ import annotations

import re
from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        # A backend that never answers `100 Continue` would hang the client: uvicorn has already answered
        # it (as Envoy does), so the request goes on without it.
        "expect",
    }
)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def forward_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in headers if k.lower() not in HOP_BY_HOP}


def unsendable_header(headers: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first header the server could not send (a control character, or a character
    outside Latin-1, in its name or value), or None. One check over all of them in the usual case."""
    pairs = list(headers)
    joined = "".join(name + value for name, value in pairs)
    if joined.isascii() and not _CONTROL.search(joined):
        return None
    for name, value in pairs:
        for text in (name, value):
            if _CONTROL.search(text) or any(ord(c) > 0xFF for c in text):
                return name
    return None
