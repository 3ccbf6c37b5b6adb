"""How many requests one server may have in flight: an adaptive (AIMD) limit with a latency signal.

A real InvenTree on 2 cores (gunicorn, 2 workers, SQLite) serves two requests at a time; more only queue in
front of it, and concurrent writes can answer ``500 database is locked`` (inventree-api.md §2.13, §6). A fixed
concurrency is wrong on both sides: too low leaves such a server idle, too high queues work in it and makes
writes collide. So the client learns the server's capacity as TCP does:

- **grow while it keeps up**: each answer that came back fast while the limit was in use (half of it or
  more taken) adds ``1 / limit`` (about one more request in flight per round trip);
- **back off on overload**: a 5xx/429 answer (SQLite's ``database is locked`` excepted: two writes in service
  met, which fewer requests in flight would not prevent), a timeout, or recent round trips (a moving average, so one late
  answer on a busy machine is not taken for queueing) slower than ``tolerance`` × the fastest seen for the same
  kind of request (the server is queueing) multiplies the limit by ``backoff``, once per round trip: answers to
  requests sent before the last cut do not cut again.

Round trips are compared per kind (method and path with ids folded): a template read takes 17 ms where a part
read takes 170 ms on the same server, and only a kind's own history says whether it got slower. The fastest
time drifts up slowly with answers inside the tolerance (never with queued ones, or queueing would become the
norm), and an answer that is slow while the limit is at its minimum is taken as the server's new pace: nothing
of ours queues there, so the server itself got slower.

The clock is injectable so the rules are tested without waiting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

DRIFT = 0.002
SMOOTHING = 0.25
"""Weight of the newest round trip in a kind's moving average."""
"""How far the fastest round trip of a kind moves toward a slower answer (so it can follow a slower server)."""


@dataclass
class Ticket:
    """One request holding a slot: when it was sent and whether the limit was in use when it was."""

    sent: float
    saturated: bool


class AdaptiveLimit:
    """At most :attr:`allowed` requests in flight; :meth:`slot` waits for room and reports how the answer went."""

    def __init__(
        self,
        *,
        initial: float = 16,
        minimum: float = 1,
        maximum: float = 64,
        tolerance: float = 2.0,
        backoff: float = 0.7,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum or not 0 < backoff < 1 or tolerance <= 1:
            raise ValueError("need 1 <= minimum <= initial <= maximum, 0 < backoff < 1 and tolerance > 1")
        self.limit = float(initial)
        self.minimum = float(minimum)
        self.maximum = float(maximum)
        self.tolerance = tolerance
        self.backoff = backoff
        self.clock = clock
        self.in_flight = 0
        self.cuts = 0  # how often the limit was cut (for benchmarks and status pages)
        self._fastest: dict[str, float] = {}
        self._recent: dict[str, float] = {}
        self._last_cut = -math.inf
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self) -> Ticket:
        """Wait until fewer than :attr:`allowed` requests are in flight, then take a slot."""
        while self.in_flight >= self.allowed:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        # "in use": at least half the allowed slots busy (a caller sending one at a time proves nothing)
        return Ticket(sent=self.clock(), saturated=self.in_flight * 2 >= self.allowed)

    def release(self, ticket: Ticket, kind: str, *, overloaded: bool) -> None:
        """Give the slot back and learn from the answer (``overloaded``: 5xx, 429 or a timeout).

        Synchronous, so a cancelled request still gives its slot back. Every waiter is woken and checks again
        (no wake-up is lost when one of them was cancelled meanwhile)."""
        self.in_flight -= 1
        self.record(ticket, kind, overloaded=overloaded)
        if self.in_flight < self.allowed:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def record(self, ticket: Ticket, kind: str, *, overloaded: bool) -> None:
        """The limit rule itself (no slot bookkeeping): grow, hold or cut after one answer."""
        rtt = self.clock() - ticket.sent
        fastest = self._fastest.get(kind)
        slow = False
        if not overloaded:
            recent = self._recent.get(kind, rtt)
            recent = self._recent[kind] = recent + (rtt - recent) * SMOOTHING
            if fastest is None or rtt < fastest:
                self._fastest[kind] = rtt
            elif recent <= fastest * self.tolerance:
                if rtt <= fastest * self.tolerance:
                    self._fastest[kind] = fastest + (rtt - fastest) * DRIFT
            elif self.limit <= self.minimum:
                self._fastest[kind] = recent  # slow with nothing of ours queued: the server's new pace
            else:
                slow = True
        if overloaded or slow:
            if ticket.sent >= self._last_cut:  # one cut per round trip, not one per answer of the same burst
                self.limit = max(self.minimum, self.limit * self.backoff)
                self._last_cut = self.clock()
                self.cuts += 1
        elif ticket.saturated:
            self.limit = min(self.maximum, self.limit + 1 / self.limit)

    @asynccontextmanager
    async def slot(self, kind: str) -> AsyncIterator[Outcome]:
        """``async with limit.slot(kind) as outcome:`` send, then set ``outcome.overloaded`` from the answer.

        An exception leaving the block counts as overload only when the block said so."""
        ticket = await self.acquire()
        outcome = Outcome()
        try:
            yield outcome
        finally:
            self.release(ticket, kind, overloaded=outcome.overloaded)


@dataclass
class Outcome:
    """What the caller learned from one answer, for :meth:`AdaptiveLimit.slot`."""

    overloaded: bool = False
