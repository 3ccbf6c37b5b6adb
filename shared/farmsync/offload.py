"""Short blocking calls run off the event loop in shared worker trips.

``asyncio.to_thread`` hands each call to the thread pool on its own: a future, an executor hand-off and a wake-up
of the loop per call, about 0.25 ms of the loop's CPU, plus the worker threads and the loop taking the GIL from
each other. A G-code run makes some six such calls per printer before its upload starts (the manifest, the plan,
the write guard, the file's first chunk), all printers at once, on a loop that is the run's bottleneck: at 32
printers they cost tens of milliseconds before the last transfer starts.

:func:`batched` puts every call made during one pass of the event loop on one worker trip, run one after another
there, and wakes the loop once for all of them. The calls still never run on the loop, so one that blocks (SQLite
waiting for another process's write lock, a large file hashed for the first time) holds up only the calls of its
own trip, never the loop, and the next pass's calls go to another worker. Each call keeps its own outcome, context
and cancellation, as with ``to_thread``: a call whose caller was cancelled still runs, its result is dropped.

Use it for local work measured in microseconds to milliseconds. Calls that wait on a network (Firestore) keep
their own threads (:func:`store_call` picks for a store), since one trip runs its calls in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar
from weakref import WeakKeyDictionary

P = ParamSpec("P")
T = TypeVar("T")

_Call = tuple[Callable[[], Any], "asyncio.Future[Any]", contextvars.Context]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]

_gathering: WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Call]] = WeakKeyDictionary()
"""Per event loop: the calls made during its current pass, sent to a worker when the pass ends."""


async def batched(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in a worker thread, sharing the trip with every call made in the same loop pass."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    trip = _gathering.get(loop)
    if trip is None:
        trip = _gathering[loop] = []
        loop.call_soon(_send, loop, trip)
    trip.append((functools.partial(fn, *args, **kwargs), future, contextvars.copy_context()))
    return await future


def _send(loop: asyncio.AbstractEventLoop, trip: list[_Call]) -> None:
    if _gathering.get(loop) is trip:
        del _gathering[loop]
    try:
        loop.run_in_executor(None, _work, loop, trip)
    except RuntimeError as exc:  # the default executor is shut down (the loop is closing)
        _deliver([(future, None, exc) for _call, future, _context in trip])


def _work(loop: asyncio.AbstractEventLoop, trip: list[_Call]) -> None:
    outcomes: list[_Outcome] = []
    for call, future, context in trip:
        try:
            outcomes.append((future, context.run(call), None))
        except BaseException as exc:  # handed to the caller, as to_thread does
            outcomes.append((future, None, exc))
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting for these
        loop.call_soon_threadsafe(_deliver, outcomes)


def _deliver(outcomes: list[_Outcome]) -> None:
    for future, value, error in outcomes:
        if future.done():  # the caller was cancelled meanwhile
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


class Offload(Protocol):
    """``batched`` or ``asyncio.to_thread``: runs ``fn(*args, **kwargs)`` off the loop."""

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]: ...


def store_call(store: object) -> Offload:
    """How to call ``store`` off the loop: :func:`batched` for a store on this machine's disk (it says so with
    ``runs_locally``), ``asyncio.to_thread`` for one across a network, whose calls each wait on their own."""
    return batched if getattr(store, "runs_locally", False) else asyncio.to_thread
