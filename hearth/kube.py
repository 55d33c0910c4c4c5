"""Kubernetes helpers shared by the gateway and the scaler: list-then-watch in a thread."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("hearth.kube")


class Informer:
    """List, then watch, one kind of object in a thread; `on_change(objects)` gets the full current set."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        on_change: Callable[[dict[str, dict[str, Any]]], None],
        label_selector: str,
        stop: threading.Event,
        **list_kwargs: Any,
    ) -> None:
        self.list_fn = list_fn
        self.on_change = on_change
        self.selector = label_selector
        self.stop = stop
        self.kwargs = list_kwargs
        self.objects: dict[str, dict[str, Any]] = {}

    def run(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            try:
                raw = self.list_fn(label_selector=self.selector, _preload_content=False, **self.kwargs)
                listed = json.loads(raw.data)
                self.objects = {object_key(o): o for o in listed.get("items", [])}
                self.on_change(dict(self.objects))
                stream = watch.Watch().stream(
                    self.list_fn,
                    label_selector=self.selector,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=240,
                    **self.kwargs,
                )
                for event in stream:
                    if self.stop.is_set():
                        return
                    obj = event.get("raw_object")
                    if event["type"] == "ERROR" or not isinstance(obj, dict):
                        break  # e.g. 410 Gone: list again
                    if event["type"] == "DELETED":
                        self.objects.pop(object_key(obj), None)
                    else:
                        self.objects[object_key(obj)] = obj
                    self.on_change(dict(self.objects))
            except Exception as exc:
                log.warning("watch interrupted (%s); listing again", exc)
                self.stop.wait(1.0)


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
