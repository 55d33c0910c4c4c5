"""Reading a request body with a size limit and a time limit, for every Hearth server."""

from __future__ import annotations

from asyncio import timeout as asyncio_timeout

from starlette.requests import Request


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


async def read_bounded(request: Request, limit: int, within: float) -> bytes:
    """The body, or BodyTooLarge as soon as it is known to exceed `limit` (declared or streamed), or
    BodyTimeout when it has not all arrived `within` seconds (a client trickling its upload)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio_timeout(within):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout from None
    return b"".join(chunks)
