"""One HTTP exchange on a relay's hot path, as a plain ASGI call: the request's body read with bounds, the
answer sent message by message, and the client watched for leaving, the whole exchange long.

Why not Starlette's Request and StreamingResponse here: every body chunk of a relayed stream went through
a response generator, a task group listening for the disconnect and three middleware `send` wrappers
before reaching the server; a relay sends each chunk straight to the server. The rest of each app (model
lists, health, metrics, 404s) stays on Starlette.

The watch: one task waits for `http.disconnect` (after the body, the next message is the disconnect) and
cancels the exchange when it comes; `watching()` turns that cancellation into ClientGone. A held request,
a whole answer being computed and a stream being relayed all notice a vanished client at once, through
one mechanism, so that its place in line, its lease and the upstream request are given back at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.bodies import read_body


class ClientGone(Exception):
    """The client disconnected before its answer ended."""


class Exchange:
    """One request and its answer. `status` is the status sent (0 until the answer's head is); `complete`
    once its last message is."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send  # the server's own: the relay writes body chunks through it directly
        self.headers = Headers(scope=scope)
        self.status = 0
        self.complete = False

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    @property
    def begun(self) -> bool:
        return self.status != 0

    async def read_body(self, limit: int, within: float) -> bytes:
        """The request's body (common.bodies: BodyTooLarge, BodyTimeout); ClientGone if the client left."""
        try:
            return await read_body(self.receive, self.headers.get("content-length"), limit, within)
        except ClientDisconnect:
            raise ClientGone from None

    async def start(self, status: int, headers: Mapping[str, str], media_type: str | None = None) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if media_type is not None:
            raw.append((b"content-type", media_type.encode("latin-1")))
        self.status = status
        await self.send({"type": "http.response.start", "status": status, "headers": raw})

    async def write(self, chunk: bytes) -> None:
        await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def end(self, chunk: bytes = b"") -> None:
        """The last message (once: a no-op after the answer is complete)."""
        if not self.complete:
            self.complete = True
            await self.send({"type": "http.response.body", "body": chunk, "more_body": False})

    async def respond(self, response: Response) -> None:
        """A whole answer made by Starlette (an error's JSON) sent as this exchange's answer."""

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = int(message["status"])
            elif not message.get("more_body", False):
                self.complete = True
            await self.send(message)

        await response(self.scope, self.receive, sending)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Raises ClientGone out of the block as soon as the client disconnects (the body must have been
        read). The block is cancelled at its current await; nothing else is."""
        task = asyncio.current_task()
        assert task is not None
        listener = asyncio.ensure_future(self._disconnect())
        gone = False

        def leave(done: asyncio.Future[None]) -> None:
            nonlocal gone
            # A server reports the end of a complete answer as a disconnect too: that is no client leaving.
            if not done.cancelled() and done.exception() is None and not self.complete:
                gone = True
                task.cancel()

        listener.add_done_callback(leave)
        try:
            yield
        except asyncio.CancelledError:
            if gone and task.uncancel() == 0:
                raise ClientGone from None
            raise
        finally:
            listener.remove_done_callback(leave)
            listener.cancel()
        if gone and task.uncancel() == 0:
            # The block swallowed the cancellation (it landed in code that suppresses it): still gone.
            raise ClientGone

    async def _disconnect(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass


class Mounted:
    """An ASGI callable that Starlette's router mounts as it is (a bound method or a function would be
    taken for a request handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
