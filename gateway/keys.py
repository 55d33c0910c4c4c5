"""Who is calling: API keys owned by namespaces (policies.keys), kept as SHA-256 digests in memory,
learned from labelled Secrets by a watch (a new or revoked key takes effect as the event arrives), and each
key's limits: a rate (a token bucket) and requests at once (held or in flight).

The key presented is hashed and its digest looked up; the stored digest is then compared with
`hmac.compare_digest`. The dictionary lookup's timing depends only on digests, which say nothing usable
about any key (finding a key from its digest is a preimage attack on SHA-256)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from common.callers import bearer_token
from common.informer import Informer, InformerMetrics, resource_path
from common.kubeapi import ApiError, KubeAPI
from policies import KEY_LABEL, ApiKey, api_key_of, unique_keys
from policies import key_digest as digest

log = logging.getLogger("hearth.keys")


class Unauthorized(Exception):
    """No key, or one that no Secret holds: `reason` is `missing` or `invalid` (for the metric)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OverLimit(Exception):
    """A key over one of its limits: `code` says which, `retry_after` when a retry can succeed."""

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.code, self.message, self.retry_after = code, message, retry_after


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key of `Authorization: Bearer KEY`, else of `api-key: KEY` (Azure-style clients)."""
    bearer = bearer_token(headers)
    if bearer is not None:
        return bearer
    api_key = headers.get("api-key")
    return api_key.strip() if api_key and api_key.strip() else None


@dataclass
class Usage:
    """One key's limits in use: its token bucket and its requests at once."""

    tokens: float
    refilled: float
    open: int = 0


@dataclass
class KeyRing:
    """The keys by digest, and each key's usage (kept across a Secret's edits, dropped with the key)."""

    clock: Callable[[], float] = time.monotonic
    keys: dict[bytes, ApiKey] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)
    sources: dict[str, dict[str, ApiKey]] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)  # refused Secret -> the older one holding its key
    on_removed: Callable[[str], None] = lambda name: None

    def replace(self, keys: list[ApiKey], source: str = "watch") -> None:
        """Every key there is now (a Secret's watch calls this with all of them); `source` adds to them
        (the watch's and a file's keys are kept apart)."""
        before = {key.name for key in self.keys.values()}
        self.sources[source] = {key.name: key for key in keys}
        self.keys, refused = unique_keys([key for known in self.sources.values() for key in known.values()])
        for name, holder in sorted(refused.items()):
            if self.duplicates.get(name) != holder:
                log.warning(
                    "API key Secret %s holds the same key as %s, which is older: %s is refused (a key belongs to "
                    "one Secret; if yours leaked, make a new one)",
                    name,
                    holder,
                    name,
                )
        self.duplicates = refused
        names = {key.name for key in self.keys.values()}
        for gone in sorted(before - names):
            self.usage.pop(gone, None)
            self.on_removed(gone)

    def authenticate(self, headers: Mapping[str, str]) -> ApiKey:
        presented = presented_key(headers)
        if presented is None:
            raise Unauthorized("missing")
        wanted = digest(presented)
        found = self.keys.get(wanted)
        if found is None or not hmac.compare_digest(found.digest, wanted):
            raise Unauthorized("invalid")
        return found

    def admit(self, key: ApiKey) -> Callable[[], None]:
        """Count one request against the key's limits, or OverLimit. Returns the release of its place
        among the key's requests at once (call it once, when the answer ends)."""
        now = self.clock()
        usage = self.usage.get(key.name)
        if usage is None:
            usage = self.usage[key.name] = Usage(tokens=_burst(key), refilled=now)
        if key.max_concurrent is not None and usage.open >= key.max_concurrent:
            raise OverLimit(
                "concurrency_limit_exceeded",
                f"key {key.name} already has {usage.open} requests open (limit {key.max_concurrent})",
                1,
            )
        if key.requests_per_minute is not None:
            rate = key.requests_per_minute / 60.0
            usage.tokens = min(_burst(key), usage.tokens + (now - usage.refilled) * rate)
            usage.refilled = now
            if usage.tokens < 1.0:
                raise OverLimit(
                    "rate_limit_exceeded",
                    f"key {key.name} is over its limit of {key.requests_per_minute} requests per minute",
                    (1.0 - usage.tokens) / rate,
                )
            usage.tokens -= 1.0
        usage.open += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                usage.open -= 1

        return release


def keys_from_file(path: Path) -> list[ApiKey]:
    """The keys of a YAML file of key Secrets; a Secret that is not a usable key stops the start (ValueError
    naming it and the fix): a file is the operator's own, not a tenant's."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [api_key_of(d) for d in documents if isinstance(d, dict) and d.get("kind") == "Secret"]


def _burst(key: ApiKey) -> float:
    """A key's bucket: a second's worth of its rate, at least one request."""
    return max(1.0, (key.requests_per_minute or 60) / 60.0)


class KeyWatch:
    """Secrets labelled as API keys into the ring, read namespace by namespace. Of each Secret only the
    parsed key (its digest, scope and limits) is kept: the informer never holds a Secret's data. A Secret
    that is not a usable key is left out, logged once per version with the reason (never with its data).

    Which namespaces: those of `--namespace` when given, else those whose models the front door knows
    (`known()`, None until its discovery has synced), followed as models come and go. In each the front door
    may list Secrets only if the namespace let it: RBAC cannot narrow a list by label, so a cluster-wide
    grant would let the internet-facing front door read every Secret of the cluster. A namespace's admin
    applies manifests/tenant/ (the Role hearth-api-keys and its RoleBinding); a namespace without it is
    refused (403), logged once with that fix, and tried again with the informer's backoff (at most 30 s)."""

    def __init__(
        self,
        ring: KeyRing,
        api: KubeAPI,
        namespaces: tuple[str, ...],
        metrics: InformerMetrics | None,
        known: Callable[[], set[str] | None],
        every: float = 0.5,
    ) -> None:
        self.ring, self.api, self.metrics, self.every = ring, api, metrics, every
        self.fixed = frozenset(namespaces)
        self.known = known
        self.stores: dict[str, Mapping[str, dict[str, Any]]] = {}
        self.watches: dict[str, tuple[Informer, asyncio.Task[None]]] = {}
        self.refused: set[str] = set()
        self.begun: dict[str, float] = {}  # when each namespace's reading began (monotonic)
        self._reconciled = False

    @property
    def synced(self) -> bool:
        """Every namespace wanted is read (or refused): until then the front door is not Ready."""
        return self._reconciled and all(
            informer.synced.is_set() or namespace in self.refused for namespace, (informer, _) in self.watches.items()
        )

    async def run(self) -> None:
        try:
            while True:
                self.reconcile()
                await asyncio.sleep(self.every)
        finally:
            for _, task in self.watches.values():
                task.cancel()

    def reconcile(self) -> None:
        """Starts reading the namespaces newly wanted and stops reading (and forgets the keys of) the others."""
        wanted = self.fixed or self.known()
        if wanted is None:
            return
        for namespace in sorted(wanted - set(self.watches)):
            informer = Informer(
                self.api,
                resource_path("v1", "secrets", namespace),
                partial(self._changed, namespace),
                selector=f"{KEY_LABEL}=true",
                metrics=self.metrics,
                resource="secrets",
                transform=lambda secret: {_PARSED: api_key_of(secret)},
                on_error=partial(self._failed, namespace),
            )
            self.watches[namespace] = (informer, asyncio.get_running_loop().create_task(informer.run()))
            self.begun[namespace] = time.monotonic()
        gone = set(self.watches) - wanted
        for namespace in gone:
            self.watches.pop(namespace)[1].cancel()
            self.stores.pop(namespace, None)
            self.refused.discard(namespace)
            self.begun.pop(namespace, None)
        if gone:
            self._publish()
        self._reconciled = True

    async def settle(self, limit: float) -> None:
        """Reconciles now, then waits (at most `limit` seconds) for namespaces whose reading began less than
        SETTLE_WINDOW seconds ago and has not listed yet: a key of a namespace whose first model was applied a
        moment ago is not refused as unknown. (A namespace whose list keeps failing delays no one for long:
        unknown keys are what an attacker sends.)"""
        self.reconcile()
        pending = [self.watches[namespace][0].synced.wait() for namespace in self.arriving()]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending), limit)

    def arriving(self) -> list[str]:
        """The namespaces whose reading began less than SETTLE_WINDOW seconds ago and has not listed yet."""
        recent = time.monotonic() - SETTLE_WINDOW
        return [
            namespace
            for namespace, (informer, _) in self.watches.items()
            if not informer.synced.is_set() and namespace not in self.refused and self.begun[namespace] > recent
        ]

    def _changed(self, namespace: str, objects: Mapping[str, dict[str, Any]]) -> None:
        self.refused.discard(namespace)
        self.stores[namespace] = objects
        self._publish()

    def _publish(self) -> None:
        self.ring.replace([kept[_PARSED] for store in self.stores.values() for kept in store.values()])

    def _failed(self, namespace: str, error: Exception) -> None:
        if isinstance(error, ApiError) and error.status == 403 and namespace not in self.refused:
            self.refused.add(namespace)
            log.warning(
                "API keys of namespace %s are not read: the front door may not list Secrets there (%s); its "
                "admin applies manifests/tenant/ in it (kubectl apply -n %s -f manifests/tenant/)",
                namespace,
                error.message,
                namespace,
            )


_PARSED = "apiKey"
SETTLE_WINDOW = 10.0  # seconds after a namespace's reading began during which an unknown key waits for it
