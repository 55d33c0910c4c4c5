"""What the front door knows about models and their backends, and how it picks one. No I/O.

A model is a Deployment (`namespace/name`); its backends are its ready, non-terminating pods, reached
through each pod's sidecar. The table counts what the front door holds and has in flight per model and
per backend, so that routing takes the least-loaded backend and `/demand` reports what the scaler needs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from policies import ScaleSpec


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
    served_name: str
    scale: ScaleSpec = field(default_factory=ScaleSpec)
    backends: dict[str, Backend] = field(default_factory=dict)
    held: int = 0
    in_flight: int = 0
    failure: str | None = None  # set when the model cannot start (e.g. Degraded); held requests fail
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1

    def notify(self) -> None:
        """Wake every request waiting on this model; each re-checks the state, then waits again."""
        self.changed.set()
        self.changed = asyncio.Event()

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]


class Holding:
    """Counts one held request on its model and on the table (a Counted for a Lease)."""

    def __init__(self, table: ModelTable, state: ModelState) -> None:
        self._table, self._state = table, state

    def enter(self) -> None:
        self._state.held += 1
        self._table.held_total += 1

    def leave(self) -> None:
        self._state.held -= 1
        self._table.held_total -= 1


class UnknownModel(LookupError):
    pass


class AmbiguousModel(LookupError):
    pass


class ModelTable:
    def __init__(self) -> None:
        self.models: dict[str, ModelState] = {}
        self.held_total = 0

    def upsert(self, key: str, served_name: str, scale: ScaleSpec) -> ModelState:
        state = self.models.get(key)
        if state is None:
            state = ModelState(key=key, served_name=served_name, scale=scale)
            self.models[key] = state
        else:
            state.served_name, state.scale = served_name, scale
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

    def set_failure(self, key: str, reason: str | None) -> None:
        state = self.models.get(key)
        if state is not None and state.failure != reason:
            state.failure = reason
            state.notify()

    def lookup(self, requested: str) -> ModelState:
        """`namespace/name` exactly, or `name` when it is unique across the namespaces served."""
        if "/" in requested:
            state = self.models.get(requested)
            if state is None:
                raise UnknownModel(requested)
            return state
        matches = [s for s in self.models.values() if requested in (s.name, s.served_name)]
        if not matches:
            raise UnknownModel(requested)
        if len(matches) > 1:
            raise AmbiguousModel(", ".join(sorted(s.key for s in matches)))
        return matches[0]

    @staticmethod
    def pick(state: ModelState, exclude: set[str]) -> Backend | None:
        candidates = [b for url, b in state.backends.items() if url not in exclude]
        if not candidates:
            return None
        return min(candidates, key=lambda b: (b.in_flight, b.url))

    def demand(self) -> dict[str, dict[str, int]]:
        return {
            key: {"held": s.held, "inFlight": s.in_flight, "readyPods": len(s.backends)}
            for key, s in sorted(self.models.items())
        }
