"""The line of held requests after a cold start (gateway.wake): nobody goes before the model has a ready
pod, then arrival order, a window that grows as answers start, places given back by requests that end or
leave, a place kept across heartbeats, and a fresh window for the next wake-up."""

from __future__ import annotations

import asyncio

from gateway.wake import Turn, Wake


class Line:
    """`count` requests held in arrival order, joining the line in the reverse order (as a readiness wakes
    tasks in whatever order they run)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.wake = Wake(lambda: self.width)
        self.granted: list[int] = []
        self.tasks: dict[int, asyncio.Task[Turn | None]] = {}

    async def hold(self, count: int) -> list[int]:
        tickets = [self.wake.ticket() for _ in range(count)]
        for ticket in reversed(tickets):
            self.tasks[ticket] = asyncio.ensure_future(self._one(ticket))
        await asyncio.sleep(0.01)
        return tickets

    async def _one(self, ticket: int) -> Turn | None:
        """As gateway.holding waits in line: a place that a client leaving gives up."""
        place = self.wake.join(ticket)
        try:
            await asyncio.wait({place})
        except asyncio.CancelledError:
            self.wake.quit(ticket, place)
            raise
        if not place.result():
            return None
        self.granted.append(ticket)
        return Turn(self.wake)

    def turn(self, ticket: int) -> Turn:
        turn = self.tasks[ticket].result()
        assert turn is not None
        return turn


def test_nobody_goes_before_a_ready_pod_then_arrival_order_in_a_window_that_grows() -> None:
    async def scenario() -> None:
        line = Line(width=0)
        tickets = await line.hold(20)
        assert line.granted == [] and line.wake.busy  # the model has no ready pod yet
        line.width = 3
        line.wake.kick()
        await asyncio.sleep(0.01)
        assert line.granted == tickets[:3]  # not the first task to run: the earliest tickets
        for ticket in tickets[:3]:
            line.turn(ticket).started()  # each start lets its replacement in and one more
        await asyncio.sleep(0.01)
        assert line.granted == tickets[:9]
        for ticket in tickets[3:9]:
            line.turn(ticket).started()
        await asyncio.sleep(0.01)
        assert line.granted == tickets  # 3 + 3 + 6 = 12 wide: the other 11 are in
        for ticket in tickets[9:]:
            line.turn(ticket).started()
        assert not line.wake.busy

    asyncio.run(scenario())


def test_an_attempt_that_finds_no_answer_gives_its_place_back_without_growing() -> None:
    async def scenario() -> None:
        line = Line(width=2)
        tickets = await line.hold(5)
        assert line.granted == tickets[:2]
        line.turn(tickets[0]).end()
        line.turn(tickets[0]).started()  # too late: a turn is over once
        await asyncio.sleep(0.01)
        assert line.granted == tickets[:3] and line.wake.out == 2

    asyncio.run(scenario())


def test_a_client_that_leaves_in_line_or_just_as_its_turn_came_holds_no_place() -> None:
    async def scenario() -> None:
        line = Line(width=1)
        tickets = await line.hold(4)
        assert line.granted == tickets[:1]
        line.tasks[tickets[1]].cancel()  # left while waiting
        line.turn(tickets[0]).end()
        await asyncio.sleep(0)  # the place goes to the next ticket in line...
        assert line.granted == tickets[:1] and line.wake.out == 1
        line.tasks[tickets[2]].cancel()  # ...whose client leaves before its task has run again
        await asyncio.sleep(0.01)
        assert line.tasks[tickets[1]].cancelled() and line.tasks[tickets[2]].cancelled()
        assert line.granted == [tickets[0], tickets[3]] and line.wake.out == 1

    asyncio.run(scenario())


def test_a_request_that_leaves_and_comes_back_with_its_ticket_keeps_its_place() -> None:
    async def scenario() -> None:
        line = Line(width=0)
        tickets = await line.hold(3)
        for _ in range(100):  # after each failed attempt a request lines up again
            line.tasks[tickets[0]].cancel()
            await asyncio.sleep(0)
            line.tasks[tickets[0]] = asyncio.ensure_future(line._one(tickets[0]))
            await asyncio.sleep(0)
        assert len(line.wake._heap) <= 2 * 3 + 64  # the stale places are dropped
        line.width = 1
        line.wake.kick()
        await asyncio.sleep(0.01)
        assert line.granted == tickets[:1]

    asyncio.run(scenario())


def test_a_failed_model_sends_everyone_in_line_back_without_a_turn() -> None:
    async def scenario() -> None:
        line = Line(width=0)
        tickets = await line.hold(3)
        line.wake.recheck()
        await asyncio.sleep(0.01)
        assert [line.tasks[t].result() for t in tickets] == [None, None, None] and not line.wake.busy

    asyncio.run(scenario())


def test_the_next_wake_up_starts_from_the_first_width_again() -> None:
    async def scenario() -> None:
        line = Line(width=1)
        tickets = await line.hold(3)
        for ticket in tickets:
            await asyncio.sleep(0.01)
            line.turn(ticket).started()
        assert not line.wake.busy and line.wake.grown == 0
        line.granted.clear()
        tickets = await line.hold(3)
        assert line.granted == tickets[:1]

    asyncio.run(scenario())
