"""Bounds on a request head for every Hearth server (uvicorn with httptools has none of its own: h11's size
limit does not apply). Defaults are Envoy's: 60 KiB of head (`max_request_headers_kb`) and 100 headers
(`max_headers_count`); a head that takes longer than `head_timeout` closes the connection (slowloris).

- over the byte limit: `431 Request Header Fields Too Large`, connection closed, before the parser has
  buffered the rest (a 16 MiB header never reaches memory);
- over the count: `400`, connection closed (uvicorn's answer to a request its parser refuses);
- too slow: connection closed.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("hearth.http")
MAX_HEAD_BYTES = 60 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT = 10.0


class TooManyHeaders(Exception):
    pass


def bounded_head_protocol(
    head_timeout: float = HEAD_TIMEOUT, max_head_bytes: int = MAX_HEAD_BYTES, max_headers: int = MAX_HEADERS
) -> type[HttpToolsProtocol]:
    class BoundedHeadProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _in_head = True
        _head_bytes = 0
        _headers = 0
        _tail = b""  # the last bytes seen, for a head's end split across two reads

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(head_timeout, self._expire)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _expire(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                log.info("closing a connection whose request head took over %.0fs", head_timeout)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                # Only the head counts: the read that ends it often carries the start of the body too.
                window = self._tail + data
                end = window.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
                self._tail = window[-3:]
                if self._head_bytes > max_head_bytes:
                    self._refuse_head()
                    return
            super().data_received(data)

        def _refuse_head(self) -> None:
            self._disarm()
            if self.transport.is_closing():
                return
            log.info("refusing a request head over %d bytes", max_head_bytes)
            body = f"request head over {max_head_bytes} bytes".encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            # The byte count is not reset here: the parser calls this in the middle of the read being counted.
            self._in_head, self._headers = True, 0
            self._arm()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._headers += 1
            if self._headers > max_headers:
                raise TooManyHeaders(f"over {max_headers} headers")  # the parser's error: a 400, then closed
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes, self._tail = False, 0, b""  # ready for the next request's head
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return BoundedHeadProtocol
