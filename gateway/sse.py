"""Server-sent events as the front door writes them: comments (heartbeats) and OpenAI-shaped error events,
the only way to report an error once a 200 stream has begun."""

from __future__ import annotations

import json
from typing import Any

import simdjson

from gateway.errors import error_body


def sse_comment(text: str) -> bytes:
    """A comment line: clients and SDKs ignore it, proxies and load balancers see traffic."""
    return f": {text}\n\n".encode()


def sse_error(message: str, kind: str, code: str) -> bytes:
    return b"data: " + error_body(message, kind, code) + b"\n\n"


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


# The Responses API's stream has no `data: [DONE]`: it ends after one of these events (vLLM and OpenAI).
RESPONSES_LAST_EVENTS = frozenset({b"response.completed", b"response.incomplete", b"response.failed", b"error"})


def last_events_of(path: str) -> frozenset[bytes] | None:
    """How a stream of this route ends: after one of these named events, or (None) after `data: [DONE]`."""
    return RESPONSES_LAST_EVENTS if path.rstrip("/") == "/v1/responses" else None


MAX_EVENT_BYTES = 1024 * 1024  # one event (a chunk of tokens, or a usage report) is a few hundred bytes
_FIELDS = (b"data", b"event", b"id", b"retry")


class MalformedStream(Exception):
    """The model's stream cannot be relayed as it is: cut in the middle of an event, ended without
    `data: [DONE]` (code `stream_broken`), or not OpenAI-shaped SSE (`stream_malformed`). The message says
    which, for the client's error event; `relayable` holds the whole, good events that came before it in
    the same chunk, still to be relayed."""

    def __init__(self, message: str, code: str = "stream_malformed", relayable: bytes = b"") -> None:
        super().__init__(message)
        self.code = code
        self.relayable = relayable


class WholeEvents:
    """Relays a model's SSE stream one whole event at a time, so that an error event the relay appends
    never lands in the middle of one (the SDK then failed on the partial line with a JSONDecodeError
    instead of raising the error). Every event must be comments and `data`/`event`/`id`/`retry` fields,
    its `data` JSON or `[DONE]`; the stream must end with `[DONE]` (vLLM, SGLang, TGI and llama.cpp all send
    it; without it, a reset of a close-delimited answer looked like its end), or, given `last_events` (the
    Responses API's), with an event of one of those names."""

    def __init__(self, last_events: frozenset[bytes] | None = None) -> None:
        self._pending = b""
        self._last_events = last_events
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        """The whole events that `chunk` completes (b"" while an event is still arriving)."""
        if not self._pending and chunk.endswith(b"\n\n"):  # the usual read: whole events, nothing after
            if chunk.startswith(b"data: {") and chunk.count(b"\n") == 2 and not self.done and _is_json(chunk[6:-2]):
                return chunk  # one data line of JSON: the usual event
            self._check(chunk)
            return chunk
        data = self._pending + chunk if self._pending else chunk
        whole, self._pending = _split_after_last_event(data)
        if len(self._pending) > MAX_EVENT_BYTES:
            raise MalformedStream(f"the model sent an event over {MAX_EVENT_BYTES} bytes")
        if whole:
            self._check(whole)
        return whole

    def end(self) -> None:
        """The stream has ended: MalformedStream unless it ended whole, after `[DONE]`."""
        if self._pending.strip():
            raise MalformedStream("the model's stream broke off in the middle of an event", "stream_broken")
        if not self.done:
            expected = "`data: [DONE]`" if self._last_events is None else "its last event (response.completed)"
            raise MalformedStream(f"the model's stream ended before {expected}", "stream_broken")

    def _check(self, events: bytes) -> None:
        split = (events.replace(b"\r\n", b"\n") if b"\r" in events else events).split(b"\n\n")
        for index, event in enumerate(split):
            try:
                if event.startswith(b"data: ") and b"\n" not in event:  # one data line: the usual event
                    self._check_data(event[6:])
                elif event:
                    self._check_event(event)
            except MalformedStream as bad:
                bad.relayable = b"".join(e + b"\n\n" for e in split[:index])
                raise

    def _check_event(self, event: bytes) -> None:
        data: list[bytes] = []
        kind = b""
        for line in event.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if name not in _FIELDS:
                raise MalformedStream(f"the model sent a line that is not SSE: {line[:80]!r}")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"data":
                data.append(value)
            elif name == b"event":
                kind = value
        if data:
            self._check_data(b"\n".join(data))
        if self._last_events is not None and kind in self._last_events:
            self.done = True

    def _check_data(self, data: bytes) -> None:
        if self.done and self._last_events is None:
            raise MalformedStream("the model sent data after `data: [DONE]`")
        if data == b"[DONE]":
            self.done = True
            return
        if not _is_json(data):
            raise MalformedStream(f"the model sent data that is not JSON: {data[:80]!r}")


def _split_after_last_event(data: bytes) -> tuple[bytes, bytes]:
    """`data` cut after its last blank line (LF or CRLF): the whole events, and the rest."""
    lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
    end = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
    return data[:end], data[end:]


# simdjson validates a whole document and builds Python objects only when asked (never, here): a third of
# orjson's cost per event, on the relay's hot path. The parser is reused; its document is dropped at once.
_PARSER = simdjson.Parser()


def _is_json(data: bytes) -> bool:
    try:
        _PARSER.parse(data)
    except ValueError:
        return False
    return True
