"""Waking a model without a thundering herd: the requests held while it was at zero go to it in the order
they arrived, a window at a time, and the window opens as answers start (TCP's slow start as a
concurrency limit: each answer that starts lets its replacement in and one more, so the window doubles
every time to first token).

Released all at once, 1,000 held streams wake 1,000 tasks in the same instant, and reach one new replica
together: the first client's first token waits for the whole herd. Here a held request waits in line, not
on the model's state, so readiness wakes only the first window (the model's per-replica target times its
ready pods); the others wake when their turn comes, in arrival order. A request keeps its place while it
wakes for its heartbeats. Pure asyncio, no I/O: a ticket per held request, taken when its hold begins; a
turn per attempt to reach a backend."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class Turn:
    """One request's place in the window, from its attempt to reach a backend until its answer starts
    (`started`: the window grows) or the attempt ends without an answer (`end`: the place is given back).
    Whichever comes first counts; the other is a no-op."""

    def __init__(self, wake: Wake) -> None:
        self._wake: Wake | None = wake

    def started(self) -> None:
        self._over(grow=True)

    def end(self) -> None:
        self._over(grow=False)

    def _over(self, *, grow: bool) -> None:
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.leave(grow=grow)


class Wake:
    """The line of one model's held requests. `width()` is the first width of the window (0 while the
    model has no ready pod: nobody goes); each answer that starts widens it by one, until nobody waits and
    nobody is out, when it starts over."""

    def __init__(self, width: Callable[[], int]) -> None:
        self._width = width
        self._tickets = itertools.count()
        self._heap: list[int] = []  # tickets in line (and some that left, skipped when met)
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._dispatching = False
        self.out = 0  # turns given and not over yet
        self.grown = 0

    def ticket(self) -> int:
        """A held request's place in line, taken when its hold begins."""
        return next(self._tickets)

    @property
    def busy(self) -> bool:
        """Someone is in line or out: a newcomer goes behind them."""
        return bool(self._waiting) or self.out > 0

    def join(self, ticket: int) -> asyncio.Future[bool]:
        """Take this ticket's place in line. The future says True when its turn comes (the model has
        ready pods, every earlier ticket in line had its turn, and the window has room: the holder makes a
        `Turn` of it), False when `recheck` asks everyone to look at the model again (it failed or went
        away). A request that stops waiting for it calls `quit`."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = future
        heapq.heappush(self._heap, ticket)
        self._schedule()
        return future

    def quit(self, ticket: int, future: asyncio.Future[bool]) -> None:
        """The request gave up its place: dropped from the line, or its turn given back if it had one."""
        if self._waiting.get(ticket) is future:
            del self._waiting[ticket]
            self._compact()
        elif future.done() and not future.cancelled() and future.result():
            self.leave(grow=False)

    def kick(self) -> None:
        """The model's pods changed: let in whoever the window now has room for."""
        self._schedule()

    def recheck(self) -> None:
        """Wake everyone in line without a turn (the model failed or went away)."""
        waiting, self._waiting, self._heap = self._waiting, {}, []
        for future in waiting.values():
            if not future.done():
                future.set_result(False)

    def leave(self, *, grow: bool) -> None:
        self.out -= 1
        self.grown += 1 if grow else 0
        if not self.busy:
            self.grown = 0  # this wake-up is over: the next one starts from the first width
        self._schedule()

    def _schedule(self) -> None:
        # Turns are given a loop pass later, so that every request that joins the line in this pass has
        # its place first: the earliest ticket goes first, not the first task to run.
        if self._waiting and not self._dispatching:
            self._dispatching = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatching = False
        width = self._width()
        while self._heap and width > 0 and self.out < width + self.grown:
            future = self._waiting.pop(heapq.heappop(self._heap), None)
            if future is None or future.done():
                continue  # left the line
            future.set_result(True)
            self.out += 1

    def _compact(self) -> None:
        # Requests that left stay in the heap until met; drop them before they outnumber those in line.
        if len(self._heap) > 2 * len(self._waiting) + 64:
            self._heap = list(self._waiting)
            heapq.heapify(self._heap)
