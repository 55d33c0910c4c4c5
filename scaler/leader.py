"""Leader election on a coordination.k8s.io/v1 Lease, in asyncio.

One scaler acts; the others stand by and take over within the lease duration when the leader dies. A
leader acts only while `leading()` holds: that is, until `renew_deadline` after its last successful renew,
which is shorter than the lease duration, so a leader that cannot renew stops acting before any standby
could take the lease (the kubernetes client's thread-based elector kept acting after losing it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from common.kubeapi import ApiError, KubeAPI
from scaler.settings import LeaseSettings

log = logging.getLogger("hearth.leader")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _micro(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


class LeaseStore(Protocol):
    """The three Lease calls the elector needs (tests pass an in-memory store)."""

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create(self, namespace: str, body: dict[str, Any]) -> bool: ...

    async def replace(self, namespace: str, name: str, body: dict[str, Any]) -> bool: ...


class LeaseApi:
    """LeaseStore on the Kubernetes API (each call bounded by the client's timeout)."""

    def __init__(self, api: KubeAPI) -> None:
        self._api = api

    @staticmethod
    def _path(namespace: str, name: str = "") -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        return f"{base}/{name}" if name else base

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._api.get(self._path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, namespace: str, body: dict[str, Any]) -> bool:
        return await self._write(self._api.post(self._path(namespace), body))

    async def replace(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        return await self._write(self._api.put(self._path(namespace, name), body))

    @staticmethod
    async def _write(call: Awaitable[dict[str, Any]]) -> bool:
        """True when written; False on a conflict (someone else wrote first)."""
        try:
            await call
        except ApiError as exc:
            if exc.status in (409, 422):
                return False
            raise
        return True


class LeaderElector:
    def __init__(
        self, api: LeaseStore, identity: str, settings: LeaseSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api = api
        self.identity = identity
        self.settings = settings
        self.clock = clock
        self._renewed_at: float | None = None
        self.transitions = 0

    def leading(self) -> bool:
        """True while this replica may act: it renewed within the renew deadline."""
        return self._renewed_at is not None and self.clock() - self._renewed_at < self.settings.renew_deadline

    async def try_acquire_or_renew(self) -> bool:
        s = self.settings
        started = self.clock()
        try:
            lease = await self.api.get(s.namespace, s.name)
            now = _now()
            spec: dict[str, Any] = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(s.duration),
                "renewTime": _micro(now),
            }
            if lease is None:
                spec["acquireTime"] = _micro(now)
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": s.name, "namespace": s.namespace},
                    "spec": spec,
                }
                ok = await self.api.create(s.namespace, body)
            else:
                current = lease.get("spec") or {}
                holder = current.get("holderIdentity")
                renewed = _parse(current.get("renewTime"))
                duration = float(current.get("leaseDurationSeconds") or s.duration)
                expired = renewed is None or (now - renewed).total_seconds() > duration
                if holder and holder != self.identity and not expired:
                    self._lose(f"held by {holder}")
                    return False
                if holder != self.identity:
                    spec["acquireTime"] = _micro(now)
                    spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
                else:
                    spec["acquireTime"] = current.get("acquireTime") or _micro(now)
                    spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0)
                body = {**lease, "spec": spec}  # carries metadata.resourceVersion: a stale write conflicts
                ok = await self.api.replace(s.namespace, s.name, body)
        except Exception as exc:
            log.warning("lease %s/%s: %s", s.namespace, s.name, exc)
            return self.leading()
        if not ok:
            self._lose("another replica wrote the lease first")
            return False
        if not self.leading():
            self.transitions += 1
            log.info("%s is now the leader (lease %s/%s)", self.identity, s.namespace, s.name)
        self._renewed_at = started  # the renew counts from before the call: never overestimate
        return True

    async def release(self) -> bool:
        """On a clean shutdown, hand the Lease back (empty holder) so that a standby takes it at its next
        retry instead of waiting for it to expire, as client-go's ReleaseOnCancel does. Stops acting first."""
        if not self.leading():
            return False
        self._renewed_at = None
        s = self.settings
        try:
            lease = await self.api.get(s.namespace, s.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return False
            spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _micro(_now())}
            released = await self.api.replace(s.namespace, s.name, {**lease, "spec": spec})
        except Exception as exc:
            log.warning("could not release lease %s/%s: %s", s.namespace, s.name, exc)
            return False
        if released:
            log.info("%s released the lease %s/%s", self.identity, s.namespace, s.name)
        return released

    def _lose(self, why: str) -> None:
        if self._renewed_at is not None:
            log.warning("%s stops leading: %s", self.identity, why)
        self._renewed_at = None

    async def run(self, on_tick: Callable[[], Awaitable[None]] | None = None) -> None:
        """Acquire and renew forever: every retry period while standing by, every third of the renew
        deadline while leading."""
        while True:
            leading = await self.try_acquire_or_renew()
            if on_tick is not None:
                await on_tick()
            await asyncio.sleep(self.settings.renew_deadline / 3 if leading else self.settings.retry_period)
