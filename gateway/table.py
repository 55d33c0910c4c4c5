"""What the front door knows about models and their backends, and how it picks one. No I/O.

A model is a Deployment (`namespace/name`); its backends are its ready, non-terminating pods, reached
through each pod's sidecar. The table counts what the front door holds and has in flight per model and
per backend, so that routing takes the least-loaded backend and `/demand` reports what the scaler needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.wake import Wake
from policies import Claimant, ScaleSpec, key_namespace, owner


@dataclass
class Backend:
    url: str
    name: str
    in_flight: int = 0

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1


@dataclass
class ModelState:
    key: str  # namespace/name
    served_name: str  # what the model's server serves: the front door asks it for this name
    scale: ScaleSpec = field(default_factory=ScaleSpec)
    backends: dict[str, Backend] = field(default_factory=dict)
    held: int = 0
    in_flight: int = 0
    started: int = 0  # requests for this model since the front door started (the scaler reads its increase)
    busy_seconds: float = 0.0  # held + in flight, integrated over time since then (request-seconds)
    busy_since: float = field(default_factory=time.monotonic)  # when busy_seconds was last brought up to date
    failure: str | None = None  # set when the model cannot start (e.g. Degraded); held requests fail
    created: str = ""  # the Deployment's creationTimestamp (who keeps a contested plain name)
    aliases: tuple[str, ...] = ()  # further names clients may use (hearth.dev/served-name after the first)
    eta: float | None = None  # the scaler's prediction of a start from zero, in seconds (policies.coldstart)
    progress: str = ""  # where a start from zero is, in words (policies.coldstart.progress_of)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    wake: Wake = field(init=False)  # the line of held requests, let in by arrival (gateway.wake)

    def __post_init__(self) -> None:
        self.wake = Wake(lambda: self.scale.target * len(self.backends))

    def enter(self) -> None:
        self.account()
        self.in_flight += 1

    def leave(self) -> None:
        self.account()
        self.in_flight -= 1

    def account(self) -> None:
        """Bring the integral up to now; called before every change of held or in flight."""
        now = time.monotonic()
        level = self.held + self.in_flight
        if level:
            self.busy_seconds += level * (now - self.busy_since)
        self.busy_since = now

    def notify(self) -> None:
        """The model changed: wake the requests waiting on it (each re-checks the state, then waits again),
        and let held requests in as its ready pods allow, or all of them out if it failed."""
        self.changed.set()
        self.changed = asyncio.Event()
        if self.failure:
            self.wake.recheck()
        else:
            self.wake.kick()

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]

    @property
    def namespace(self) -> str:
        return key_namespace(self.key)

    @property
    def claimant(self) -> Claimant:
        return Claimant(self.key, frozenset({self.name, self.served_name, *self.aliases}), self.created)


class Holding:
    """Counts one held request on its model and on the table (a Counted for a Lease)."""

    def __init__(self, table: ModelTable, state: ModelState) -> None:
        self._table, self._state = table, state

    def enter(self) -> None:
        self._state.account()
        self._state.held += 1
        self._table.held_total += 1

    def leave(self) -> None:
        self._state.account()
        self._state.held -= 1
        self._table.held_total -= 1


Allowed = Callable[[str, str], bool]  # (namespace, deployment) -> may the caller call it


class UnknownModel(LookupError):
    pass


class ModelTable:
    def __init__(self) -> None:
        self.models: dict[str, ModelState] = {}
        self.held_total = 0
        self.recorded_names: Mapping[str, str] = {}  # who holds a contested plain name (policies.names)

    def record_names(self, recorded: Mapping[str, str]) -> None:
        self.recorded_names = recorded

    def upsert(self, key: str, served: str | tuple[str, ...], scale: ScaleSpec, created: str = "") -> ModelState:
        """A model and the names it is served as (the first is its server's; the rest are aliases)."""
        first, *aliases = (served,) if isinstance(served, str) else served
        state = self.models.get(key)
        if state is None:
            state = ModelState(key=key, served_name=first, scale=scale, created=created, aliases=tuple(aliases))
            self.models[key] = state
        else:
            state.served_name, state.aliases, state.scale, state.created = first, tuple(aliases), scale, created
        return state

    def remove(self, key: str) -> None:
        state = self.models.pop(key, None)
        if state is not None:
            state.failure = "the model's Deployment was deleted"
            state.notify()

    def set_backends(self, key: str, urls: dict[str, str]) -> None:
        """Replace the ready backends of a model ({url: pod name}), keeping the counts of those that stay."""
        state = self.models.get(key)
        if state is None:
            return
        kept = {url: state.backends.get(url) or Backend(url=url, name=name) for url, name in urls.items()}
        state.backends = kept
        if kept:
            state.failure = None
        state.notify()

    def set_start(self, key: str, eta: float | None, progress: str) -> None:
        """What the front door tells held clients of a start: its predicted length and where it is now."""
        state = self.models.get(key)
        if state is not None:
            state.eta, state.progress = eta, progress

    def set_failure(self, key: str, reason: str | None) -> None:
        state = self.models.get(key)
        if state is not None and state.failure != reason:
            state.failure = reason
            state.notify()

    def visible(self, allowed: Allowed | None = None) -> list[ModelState]:
        """The models a caller may call (`allowed(namespace, deployment)`; None: all of them)."""
        if allowed is None:
            return list(self.models.values())
        return [s for s in self.models.values() if allowed(s.namespace, s.name)]

    def lookup(self, requested: str, allowed: Allowed | None = None) -> ModelState:
        """`namespace/name` exactly; else the model a plain name reaches: the only one that answers to it,
        or, when several do, the one that held it first (policies.names). A caller limited by `allowed`
        (an API key: one namespace) reaches only the models it may call, and plain names resolve among them:
        a model of another namespace neither answers nor takes a name from it."""
        state = self.models.get(requested)
        if state is not None:
            if allowed is None or allowed(state.namespace, state.name):
                return state
            raise UnknownModel(requested)
        candidates = self.visible(allowed)
        matches = [s for s in candidates if requested in (s.name, s.served_name, *s.aliases)]
        if len(matches) == 1:
            return matches[0]
        holder = owner(requested, [s.claimant for s in matches], self.recorded_names)
        if holder is None:
            raise UnknownModel(requested)
        return self.models[holder.key]

    def plain_name(self, state: ModelState, allowed: Allowed | None = None) -> str:
        """How /v1/models lists a model: its plain name when that reaches it, else namespace/name."""
        try:
            return state.name if self.lookup(state.name, allowed) is state else state.key
        except UnknownModel:
            return state.key

    @staticmethod
    def pick(state: ModelState, exclude: set[str]) -> Backend | None:
        candidates = [b for url, b in state.backends.items() if url not in exclude]
        if not candidates:
            return None
        return min(candidates, key=lambda b: (b.in_flight, b.url))

    def demand(self) -> dict[str, dict[str, float]]:
        """Per model: held and in flight now, ready pods, and the running counts the scaler windows over."""
        answer: dict[str, dict[str, float]] = {}
        for key, s in sorted(self.models.items()):
            s.account()
            answer[key] = {
                "held": s.held,
                "inFlight": s.in_flight,
                "readyPods": len(s.backends),
                "started": s.started,
                "busySeconds": round(s.busy_seconds, 6),
            }
        return answer
