"""Reading a request body with a size limit and a time limit, for every Hearth server."""

from __future__ import annotations

from asyncio import timeout as asyncio_timeout

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


async def read_bounded(request: Request, limit: int, within: float) -> bytes:
    """The body, or BodyTooLarge as soon as it is known to exceed `limit` (declared or streamed), or
    BodyTimeout when it has not all arrived `within` seconds (a client trickling its upload)."""
    return await read_body(request.receive, request.headers.get("content-length"), limit, within)


async def read_body(receive: Receive, declared: str | None, limit: int, within: float) -> bytes:
    """`read_bounded` for a plain ASGI app: `declared` is the request's Content-Length, if any."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio_timeout(within):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect  # as Starlette's Request.stream() says it
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyTimeout from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
