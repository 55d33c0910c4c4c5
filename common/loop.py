"""Run a server coroutine on uvloop (installed with uvicorn[standard]) when it is there.

uvicorn picks uvloop itself only when it creates the loop; Hearth's servers start their own loop (they
run discovery and reloaders beside uvicorn), so they ask for uvloop here."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        asyncio.run(main)
        return
    uvloop.run(main)
