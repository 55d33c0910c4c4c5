"""The informer's state machine on a scripted apiserver (the real one is in tests/e2e/test_informer.py):
410 Gone re-lists, a failed watch resumes from the last resourceVersion, bookmarks carry it forward."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from common.informer import Backoff, Informer, InformerMetrics
from common.kubeapi import ApiError


def item(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}}


class ScriptedApi:
    """Answers lists from `lists` and watches from `watches`, in order, recording each call's parameters."""

    def __init__(self, lists: list[dict[str, Any]], watches: list[list[dict[str, Any]] | Exception]) -> None:
        self.lists, self.watches = lists, watches
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.done = asyncio.Event()

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("list", dict(kwargs.get("params") or {})))
        return self.lists.pop(0)

    @asynccontextmanager
    async def watch(self, path: str, params: Mapping[str, Any], read_timeout: float) -> AsyncIterator[Any]:
        self.calls.append(("watch", dict(params)))
        if not self.watches:
            self.done.set()
            await asyncio.Event().wait()  # the script is over: block until cancelled
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step

        async def events() -> AsyncIterator[dict[str, Any]]:
            for event in step:
                yield event

        yield events()


def run(api: ScriptedApi, **options: Any) -> tuple[Informer, CollectorRegistry]:
    registry = CollectorRegistry()
    informer = Informer(
        api,  # type: ignore[arg-type]
        "/api/v1/configmaps",
        lambda _: None,
        metrics=InformerMetrics(registry),
        backoff=Backoff(base=0.001, cap=0.001),
        **options,
    )

    async def scenario() -> None:
        task = asyncio.create_task(informer.run())
        async with asyncio.timeout(10):
            await api.done.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    return informer, registry


def test_gone_relists_and_a_failed_watch_resumes_from_the_last_version() -> None:
    api = ScriptedApi(
        lists=[
            {"metadata": {"resourceVersion": "10"}, "items": [item("a", "9")]},
            {"metadata": {"resourceVersion": "30"}, "items": [item("b", "29")]},
        ],
        watches=[
            [
                {"type": "ADDED", "object": item("c", "11")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            ],
            ApiError(500, "etcd hiccup"),
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}],
        ],
    )
    informer, registry = run(api)
    kinds = [(kind, params.get("resourceVersion")) for kind, params in api.calls]
    assert kinds == [
        ("list", None),
        ("watch", "10"),  # from the list's version
        ("watch", "15"),  # the watch ended: resumed from the bookmark's version
        ("watch", "15"),  # the watch failed: resumed, after a backoff, from the same version
        ("list", None),  # 410 Gone: listed again
        ("watch", "30"),
    ]
    assert set(informer.objects) == {"ns/b"}  # the second list replaced the view (c and a are gone)
    assert registry.get_sample_value("hearth_informer_relists_total", {"resource": "configmaps"}) == 2
    assert registry.get_sample_value("hearth_informer_restarts_total", {"resource": "configmaps"}) == 1
    assert all(params.get("allowWatchBookmarks") == "true" for kind, params in api.calls if kind == "watch")


def test_a_list_is_paged_with_continue_tokens() -> None:
    api = ScriptedApi(
        lists=[
            {"metadata": {"continue": "page2"}, "items": [item("a", "1")]},
            {"metadata": {"resourceVersion": "5"}, "items": [item("b", "2")]},
        ],
        watches=[],
    )
    informer, _ = run(api)
    assert [params.get("continue") for kind, params in api.calls if kind == "list"] == [None, "page2"]
    assert set(informer.objects) == {"ns/a", "ns/b"}
    assert api.calls[-1] == (
        "watch",
        {"resourceVersion": "5", "allowWatchBookmarks": "true", "timeoutSeconds": api.calls[-1][1]["timeoutSeconds"]},
    )


def test_a_transform_keeps_only_what_it_returns_and_its_refusal_skips_the_object() -> None:
    """What the key watch relies on: a Secret is kept as its parsed key only, and one that does not parse is
    skipped and counted like a failed check, parsed once."""
    parsed: list[str] = []

    def transform(obj: dict[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        parsed.append(name)
        if name.startswith("bad"):
            raise ValueError("not a key")
        return {"name": name}

    api = ScriptedApi(
        lists=[{"metadata": {"resourceVersion": "5"}, "items": [item("good", "1"), item("bad", "2")]}],
        watches=[[{"type": "ADDED", "object": item("bad-too", "6")}]],
    )
    informer, registry = run(api, transform=transform)
    assert informer.objects == {"ns/good": {"name": "good"}}
    assert registry.get_sample_value("hearth_informer_malformed_objects_total", {"resource": "configmaps"}) == 2
    assert sorted(parsed) == ["bad", "bad-too", "good"]  # each object parsed once
