"""Coalesce concurrent requests for the same work: at most one run in flight and one queued behind it.

Bambuddy sends one webhook per finished print, and a busy farm (or a retry storm) sends many at once. Each is only
a hint that *something* is new, so running one tick per webhook reads the print log N times for the same answer.
A :class:`Coalescer` keeps the promise each caller needs — it answers only after a run that **started after it
arrived** has finished, so a function target has done its work before it replies — while N concurrent callers
cost at most two runs: the one in flight (which may have started before some of them arrived, so cannot answer
them) and one queued behind it that all of them share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Runs work for callers, sharing one queued run among every caller that arrives while another runs.

    Bound to one event loop, as asyncio futures are: :func:`coalescer` hands out one per owner and loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._running: asyncio.Future[T] | None = None
        self._queued: asyncio.Future[T] | None = None
        self._queued_work: Callable[[], Awaitable[T]] | None = None
        self.runs = 0  # how many times work actually ran: for tests and benchmarks

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Wait for a run that starts no earlier than this call, and return its result (or raise its error).

        The first caller of a run supplies its ``work``; later callers sharing that run share its result. A
        caller that is cancelled stops waiting; the shared run goes on for the others.
        """
        if self._running is None:
            future = self._start(work, self.loop.create_future())
        elif self._queued is None:
            future = self._queued = self.loop.create_future()
            self._queued_work = work
        else:
            future = self._queued
        return await asyncio.shield(future)

    def _start(self, work: Callable[[], Awaitable[T]], future: asyncio.Future[T]) -> asyncio.Future[T]:
        future.add_done_callback(_mark_retrieved)
        self._running = future
        self.runs += 1
        task = asyncio.ensure_future(work())
        task.add_done_callback(lambda done: self._finished(done, future))
        return future

    def _finished(self, task: asyncio.Future[T], future: asyncio.Future[T]) -> None:
        if task.cancelled():
            future.cancel()
        elif (error := task.exception()) is not None:
            future.set_exception(error)
        else:
            future.set_result(task.result())
        self._running = None
        queued, work = self._queued, self._queued_work
        self._queued = self._queued_work = None
        if queued is not None and work is not None:
            self._start(work, queued)


def coalescer(owner: dict[str, Any], name: str) -> Coalescer[Any]:
    """The coalescer called ``name`` kept in ``owner`` (a per-process state dict) for the running loop."""
    loop = asyncio.get_running_loop()
    found = owner.get(name)
    if not isinstance(found, Coalescer) or found.loop is not loop:
        found = owner[name] = Coalescer(loop)
    return found


async def coalesced(owner: dict[str, Any], name: str, work: Callable[[], Awaitable[T]]) -> T:
    """``work`` run through the coalescer called ``name`` (see :func:`coalescer`), typed by what it returns."""
    shared: Coalescer[T] = coalescer(owner, name)
    return await shared.run(work)


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    """A shared run's error was delivered to the callers that waited; don't log it again as never retrieved."""
    if not future.cancelled():
        future.exception()
