"""One call to a model through the front door, from its arrival to its last byte: everything its path
needs in one object (the exchange, the call, its model, its key, the outgoing request, its deadline, how a
hold shows, and the record its outcome is counted from once)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.access import CallRecord
from gateway.calls import Call
from gateway.exchange import Exchange
from gateway.framing import Framing
from gateway.routing import Outgoing
from gateway.table import ModelState
from policies import ApiKey


@dataclass
class ModelCall:
    exchange: Exchange
    call: Call
    state: ModelState
    key: ApiKey | None
    outgoing: Outgoing
    arrived: float  # time.monotonic() at arrival
    deadline: float  # when a hold gives up: arrival + the model's activation timeout
    framing: Framing | None  # how a hold is shown (None: a whole answer waits without a byte)
    record: CallRecord
    held_since: float | None = None

    async def hold(self) -> None:
        """The hold begins: a framed answer begins now, as a 200, with its opening."""
        self.held_since = time.monotonic()
        if self.framing is not None:
            await self.exchange.start(200, {"Cache-Control": "no-cache"}, self.framing.media_type)
            await self.exchange.write(self.framing.opening(self.state.key))

    def waited(self) -> float:
        """Seconds held so far (since arrival, until the hold begins)."""
        return time.monotonic() - (self.held_since or self.arrived)

    async def beat(self, waited: float) -> None:
        if self.framing is not None:
            await self.exchange.write(self.framing.beat(waited))

    @property
    def beat_every(self) -> float:
        every = self.framing.every if self.framing is not None else None
        return every or self.state.scale.heartbeat_interval
