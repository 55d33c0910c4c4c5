"""Public names of a package, imported on first use (PEP 562): `hearth webhook` reads the gateway's and the
scaler's settings models to build its parser, and must not load their servers (aiohttp, uvicorn, ...)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module `__getattr__` resolving each public name {name: (module, attribute)} when first asked."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = names[name]
        return getattr(importlib.import_module(module), attribute)

    return __getattr__
