"""Leader election logic against an in-memory Lease store with real optimistic concurrency."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Any

from scaler.leader import LeaderElector
from scaler.settings import LeaseSettings

SETTINGS = LeaseSettings(
    name="hearth-scaler", namespace="hearth-system", duration=15, renew_deadline=10, retry_period=2
)


class FakeLeases:
    """Stores one Lease per name and refuses stale writes (resourceVersion), as the apiserver does."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False
        self.log: list[str] = []  # the order of calls, to show that racing writers really interleave

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.down:
            raise ConnectionError("apiserver unreachable")
        lease = copy.deepcopy(self.leases.get(name))
        self.log.append("get")
        await asyncio.sleep(0)  # an await point, as a real call has: another writer may run here
        return lease or None

    async def create(self, namespace: str, body: dict[str, Any]) -> bool:
        if self.down:
            raise ConnectionError("apiserver unreachable")
        name = body["metadata"]["name"]
        self.log.append("create")
        if name in self.leases:
            return False
        self.version += 1
        self.leases[name] = {
            **copy.deepcopy(body),
            "metadata": {**body["metadata"], "resourceVersion": str(self.version)},
        }
        return True

    async def replace(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        if self.down:
            raise ConnectionError("apiserver unreachable")
        self.log.append("replace")
        if body["metadata"].get("resourceVersion") != self.leases[name]["metadata"]["resourceVersion"]:
            return False
        self.version += 1
        self.leases[name] = {
            **copy.deepcopy(body),
            "metadata": {**body["metadata"], "resourceVersion": str(self.version)},
        }
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_one_leader_and_a_standby() -> None:
    api, clock = FakeLeases(), Clock()
    a = LeaderElector(api, "a", SETTINGS, clock)
    b = LeaderElector(api, "b", SETTINGS, clock)
    assert run(a.try_acquire_or_renew()) is True and a.leading()
    assert run(b.try_acquire_or_renew()) is False and not b.leading()
    assert api.leases["hearth-scaler"]["spec"]["holderIdentity"] == "a"
    assert run(a.try_acquire_or_renew()) is True  # renews


def test_standby_takes_over_an_expired_lease() -> None:
    api, clock = FakeLeases(), Clock()
    a = LeaderElector(api, "a", SETTINGS, clock)
    b = LeaderElector(api, "b", SETTINGS, clock)
    run(a.try_acquire_or_renew())
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=16)  # a died 16 s ago
    api.leases["hearth-scaler"]["spec"]["renewTime"] = stale.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert run(b.try_acquire_or_renew()) is True and b.leading()
    spec = api.leases["hearth-scaler"]["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert run(a.try_acquire_or_renew()) is False and not a.leading()  # a comes back as a standby


def test_a_released_lease_goes_to_the_standby_at_its_next_retry() -> None:
    api, clock = FakeLeases(), Clock()
    a = LeaderElector(api, "a", SETTINGS, clock)
    b = LeaderElector(api, "b", SETTINGS, clock)
    run(a.try_acquire_or_renew())
    assert run(a.release()) is True and not a.leading()  # stops acting before it hands the lease back
    assert api.leases["hearth-scaler"]["spec"]["holderIdentity"] == ""
    assert run(b.try_acquire_or_renew()) is True and b.leading()  # no wait for the 15 s to expire
    assert run(a.release()) is False  # a standby has nothing to release
    assert api.leases["hearth-scaler"]["spec"]["holderIdentity"] == "b"


def test_a_leader_that_cannot_renew_stops_acting_before_the_lease_expires() -> None:
    api, clock = FakeLeases(), Clock()
    a = LeaderElector(api, "a", SETTINGS, clock)
    run(a.try_acquire_or_renew())
    api.down = True
    clock.now += 5
    assert run(a.try_acquire_or_renew()) is True  # still within the renew deadline
    clock.now += 5.1
    assert run(a.try_acquire_or_renew()) is False and not a.leading()  # 10.1 s < 15 s lease duration


def test_two_racing_writers_cannot_both_win() -> None:
    api, clock = FakeLeases(), Clock()
    a = LeaderElector(api, "a", SETTINGS, clock)
    b = LeaderElector(api, "b", SETTINGS, clock)

    async def race() -> list[bool]:
        return list(await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew()))

    assert sorted(run(race())) == [False, True]
    assert a.leading() != b.leading()
    assert api.log == ["get", "get", "create", "create"]  # both read "no lease" before either wrote


def test_two_writers_racing_for_an_expired_lease_cannot_both_win() -> None:
    api, clock = FakeLeases(), Clock()
    old = LeaderElector(api, "old", SETTINGS, clock)
    run(old.try_acquire_or_renew())
    for lease in api.leases.values():  # the old leader is gone: its last renewal is long past
        lease["spec"]["renewTime"] = "2020-01-01T00:00:00.000000Z"
    a = LeaderElector(api, "a", SETTINGS, clock)
    b = LeaderElector(api, "b", SETTINGS, clock)
    api.log.clear()

    async def race() -> list[bool]:
        return list(await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew()))

    assert sorted(run(race())) == [False, True]
    assert a.leading() != b.leading()
    assert api.log == ["get", "get", "replace", "replace"]  # the same resourceVersion read by both


def test_bad_timings_are_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="retry-period < renew-deadline < lease-duration"):
        LeaseSettings(duration=10, renew_deadline=10, retry_period=2)
