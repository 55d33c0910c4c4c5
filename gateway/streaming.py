"""A streaming response that notices a vanished client at once, whatever the ASGI spec version.

Starlette's StreamingResponse only listens for `http.disconnect` under ASGI < 2.4; under 2.4 it learns of
a disconnect when its next write fails, which for a held stream can be a whole heartbeat interval later.
Hearth drops a vanished client at once (it leaves the queue, its demand is withdrawn, the upstream
request is cancelled), so this response always listens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class PromptStreamingResponse(StreamingResponse):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def run_then_cancel(func: Callable[[], Awaitable[None]]) -> None:
                await func()
                group.cancel_scope.cancel()

            group.start_soon(run_then_cancel, partial(self.stream_response, send))
            await run_then_cancel(partial(self.listen_for_disconnect, receive))
