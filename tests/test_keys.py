"""API keys: what a key Secret says (policies.keys), and the ring that authenticates and limits (pure, a
fake clock). The front door with keys, in process, is in tests/test_auth.py; live, in tests/e2e."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from common.kubeapi import ApiError
from gateway.keys import SETTLE_WINDOW, KeyRing, KeyWatch, OverLimit, Unauthorized, presented_key
from policies import ApiKey, ContractError, api_key_of

KEY = "sk-team-a-0123456789abcdef0123"


def secret(key: str | None = KEY, namespace: str = "team-a", name: str = "ci", **annotations: str) -> dict[str, object]:
    data = {"key": base64.b64encode(key.encode()).decode()} if key is not None else {}
    meta = {"name": name, "namespace": namespace, "labels": {"hearth.dev/api-key": "true"}}
    return {"metadata": {**meta, "annotations": annotations}, "data": data}


def test_a_key_secret_is_its_namespace_its_digest_and_its_limits() -> None:
    key = api_key_of(secret(**{"hearth.dev/models": "qwen3-8b, embedder", "hearth.dev/requests-per-minute": "600"}))
    assert key.name == "team-a/ci" and key.namespace == "team-a"
    assert key.models == frozenset({"qwen3-8b", "embedder"})
    assert key.requests_per_minute == 600 and key.max_concurrent is None
    assert KEY.encode() not in repr(key).encode()  # only the digest is kept
    assert key.may_call("team-a", "qwen3-8b") and not key.may_call("team-a", "other")
    assert not key.may_call("team-b", "qwen3-8b")
    assert api_key_of(secret()).models is None  # no list: every model of the namespace


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (secret(key=None), "the key, under the entry `key`"),
        (secret(key="short"), "at least 20 characters"),
        (secret(**{"hearth.dev/models": "Not A Name"}), "comma-separated Deployment names"),
        (secret(**{"hearth.dev/requests-per-minute": "-3"}), "a whole number above 0"),
        (secret(**{"hearth.dev/max-concurrent": "lots"}), "a whole number above 0"),
    ],
)
def test_an_unusable_key_secret_is_refused_with_the_fix_and_never_quoted(bad: dict[str, object], fragment: str) -> None:
    with pytest.raises(ContractError) as refused:
        api_key_of(bad)
    assert fragment in str(refused.value) and "Secret team-a/ci" in str(refused.value)
    assert "short" not in str(refused.value) and KEY not in str(refused.value)


def test_a_key_is_read_from_bearer_or_api_key_headers() -> None:
    assert presented_key({"authorization": f"Bearer {KEY}"}) == KEY
    assert presented_key({"authorization": f"bearer  {KEY} "}) == KEY
    assert presented_key({"api-key": KEY}) == KEY
    assert presented_key({"authorization": f"Basic {KEY}"}) is None
    assert presented_key({}) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ring_with(*keys: ApiKey) -> tuple[KeyRing, Clock, list[str]]:
    clock, removed = Clock(), list[str]()
    ring = KeyRing(clock=clock, on_removed=removed.append)
    ring.replace(list(keys))
    return ring, clock, removed


def test_only_a_held_key_authenticates_and_a_revoked_one_stops_at_once() -> None:
    key = api_key_of(secret())
    ring, _, removed = ring_with(key)
    assert ring.authenticate({"authorization": f"Bearer {KEY}"}) == key
    for headers, reason in (({}, "missing"), ({"authorization": f"Bearer {KEY}x"}, "invalid")):
        with pytest.raises(Unauthorized) as refused:
            ring.authenticate(headers)
        assert refused.value.reason == reason
    ring.admit(key)  # has usage now
    listed_only = api_key_of(secret("sk-listed-only-0123456789abcdef", name="lister"))  # never admitted
    ring.replace([key, listed_only])
    ring.replace([])  # the Secrets were deleted
    with pytest.raises(Unauthorized):
        ring.authenticate({"authorization": f"Bearer {KEY}"})
    assert removed == ["team-a/ci", "team-a/lister"] and ring.usage == {}  # their metrics go with them


def test_a_rate_refuses_with_the_time_to_the_next_request_then_admits_again() -> None:
    key = api_key_of(secret(**{"hearth.dev/requests-per-minute": "30"}))  # one every 2 s, bursts of 1
    ring, clock, _ = ring_with(key)
    ring.admit(key)()
    with pytest.raises(OverLimit) as over:
        ring.admit(key)
    assert over.value.code == "rate_limit_exceeded" and over.value.retry_after == pytest.approx(2.0)
    clock.now = 1.5
    with pytest.raises(OverLimit) as over:
        ring.admit(key)
    assert over.value.retry_after == pytest.approx(0.5)
    clock.now = 2.0
    ring.admit(key)()


def test_requests_at_once_are_bounded_and_each_place_is_given_back_once() -> None:
    key = api_key_of(secret(**{"hearth.dev/max-concurrent": "2"}))
    ring, _, _ = ring_with(key)
    first, second = ring.admit(key), ring.admit(key)
    with pytest.raises(OverLimit) as over:
        ring.admit(key)
    assert over.value.code == "concurrency_limit_exceeded"
    first()
    first()  # a second release is a no-op: it must not free the other request's place
    third = ring.admit(key)
    with pytest.raises(OverLimit):
        ring.admit(key)
    second()
    third()
    assert ring.usage["team-a/ci"].open == 0


class SecretsApi:
    """An apiserver for KeyWatch: key Secrets per namespace, 403 where the namespace did not let the front
    door read them; watches block until cancelled. Records every path asked for."""

    def __init__(self, secrets: dict[str, list[dict[str, object]]], forbidden: set[str]) -> None:
        self.secrets, self.forbidden = secrets, forbidden
        self.paths: list[str] = []

    async def request(self, method: str, path: str, **kwargs: object) -> dict[str, object]:
        self.paths.append(path)
        namespace = path.split("/")[4]
        if namespace in self.forbidden:
            raise ApiError(403, f'secrets is forbidden: cannot list resource "secrets" in the namespace "{namespace}"')
        return {"metadata": {"resourceVersion": "1"}, "items": self.secrets.get(namespace, [])}

    @contextlib.asynccontextmanager
    async def watch(self, path: str, params: object, read_timeout: float) -> AsyncIterator[AsyncIterator[object]]:
        await asyncio.Event().wait()
        yield _nothing()  # pragma: no cover - never reached


async def _nothing() -> AsyncIterator[object]:
    return
    yield  # pragma: no cover


def test_keys_are_read_only_in_namespaces_with_models_and_only_where_the_namespace_allows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The front door could list every Secret of the cluster; now it reads Secrets namespace by namespace,
    for the namespaces of its models, and a namespace without the Role of manifests/tenant/ is refused,
    logged with the fix and counted as read (the front door is Ready) while its keys stay unknown."""
    key_b = "sk-team-b-0123456789abcdef0123"
    api = SecretsApi({"team-a": [secret()], "team-b": [secret(key_b, "team-b", "web")]}, forbidden={"team-b"})
    ring = KeyRing()
    known: set[str] | None = None

    async def scenario() -> tuple[bool, bool, set[str], set[str]]:
        watch = KeyWatch(ring, api, (), None, lambda: known, every=0.01)  # type: ignore[arg-type]
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.05)
        before = watch.synced  # discovery has not listed the models yet: not Ready
        nonlocal known
        known = {"team-a", "team-b"}
        async with asyncio.timeout(5):
            while not watch.synced:  # noqa: ASYNC110 - several informers' states, not one event
                await asyncio.sleep(0.01)
        names = {k.name for k in ring.keys.values()}
        known = {"team-b"}  # team-a's last model is gone: so are its keys
        await asyncio.sleep(0.05)
        after = {k.name for k in ring.keys.values()}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return before, watch.synced, names, after

    with caplog.at_level(logging.WARNING, logger="hearth.keys"):
        before, synced, names, after = asyncio.run(scenario())
    assert not before and synced
    assert names == {"team-a/ci"} and after == set()
    assert set(api.paths) == {"/api/v1/namespaces/team-a/secrets", "/api/v1/namespaces/team-b/secrets"}
    warnings = [r.getMessage() for r in caplog.records if r.name == "hearth.keys"]
    assert len(warnings) == 1 and "kubectl apply -n team-b -f manifests/tenant/" in warnings[0]


def test_an_unknown_key_waits_for_a_namespace_being_read_for_the_first_time() -> None:
    api = SecretsApi({"team-a": [secret()]}, forbidden=set())
    gate = asyncio.Event()
    listed = api.request

    async def slow(method: str, path: str, **kwargs: object) -> dict[str, object]:
        await gate.wait()
        return await listed(method, path, **kwargs)

    api.request = slow  # type: ignore[method-assign]
    ring = KeyRing()

    async def scenario() -> bool:
        watch = KeyWatch(ring, api, (), None, lambda: {"team-a"}, every=60)  # type: ignore[arg-type]
        settling = asyncio.create_task(watch.settle(5))  # a request with team-a's key, just after its model
        await asyncio.sleep(0.05)
        assert not settling.done()  # it waits for team-a's first list
        gate.set()
        await settling
        known = any(k.name == "team-a/ci" for k in ring.keys.values())
        for _, task in watch.watches.values():
            task.cancel()
        return known

    assert asyncio.run(scenario())


def test_a_namespace_whose_first_list_hangs_delays_unknown_keys_only_at_first() -> None:
    """Unknown keys are what an attacker sends: past the window, a namespace that never lists delays none."""
    api = SecretsApi({}, forbidden=set())

    async def never(method: str, path: str, **kwargs: object) -> dict[str, object]:
        await asyncio.Event().wait()
        return {}

    api.request = never  # type: ignore[method-assign]

    async def scenario() -> tuple[list[str], list[str]]:
        watch = KeyWatch(KeyRing(), api, (), None, lambda: {"team-a"}, every=60)  # type: ignore[arg-type]
        watch.reconcile()
        at_first = watch.arriving()
        watch.begun["team-a"] -= SETTLE_WINDOW  # as if it began that long ago
        later = watch.arriving()
        await watch.settle(60)  # returns at once: nothing to wait for
        for _, task in watch.watches.values():
            task.cancel()
        return at_first, later

    assert asyncio.run(scenario()) == (["team-a"], [])
