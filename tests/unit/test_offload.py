"""farmsync.offload: calls made in one pass of the event loop share one worker trip, each with its own outcome."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from farmsync import offload
from farmsync.offload import batched, store_call

who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def counting_executor(loop: asyncio.AbstractEventLoop) -> list[int]:
    """Count the loop's hand-offs to its thread pool (each is one worker trip)."""
    trips: list[int] = []
    real = loop.run_in_executor

    def counted(executor, fn, *args):
        trips.append(len(args[-1]) if fn is offload._work else 1)
        return real(executor, fn, *args)

    loop.run_in_executor = counted
    return trips


async def test_calls_of_one_pass_share_one_trip_off_the_loop() -> None:
    loop = asyncio.get_running_loop()
    trips = counting_executor(loop)
    main = threading.get_ident()

    def where(n: int) -> tuple[int, int]:
        return n * n, threading.get_ident()

    results = await asyncio.gather(*(batched(where, n) for n in range(10)))
    assert [value for value, _thread in results] == [n * n for n in range(10)]
    assert all(thread != main for _value, thread in results)
    assert len({thread for _value, thread in results}) == 1
    assert trips == [10]  # ten calls, one hand-off
    again = await batched(where, 3)
    assert again[0] == 9
    assert trips == [10, 1]  # a later pass is a trip of its own


async def test_an_error_reaches_only_its_own_caller() -> None:
    def fail() -> None:
        raise ValueError("this one")

    def fine(n: int) -> int:
        return n

    outcomes = await asyncio.gather(batched(fine, 1), batched(fail), batched(fine, 2), return_exceptions=True)
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "this one"


async def test_each_call_sees_its_callers_context() -> None:
    async def as_(name: str) -> str:
        who.set(name)
        return await batched(who.get)

    assert await asyncio.gather(as_("ash"), as_("birch"), as_("cedar")) == ["ash", "birch", "cedar"]


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    ran: list[str] = []
    release = threading.Event()

    def slow() -> str:
        release.wait(5)
        ran.append("slow")
        return "slow"

    def quick() -> str:
        ran.append("quick")
        return "quick"

    cancelled = asyncio.ensure_future(batched(slow))
    kept = asyncio.ensure_future(batched(quick))
    await asyncio.sleep(0)  # both are in the trip now
    cancelled.cancel()
    release.set()
    assert await kept == "quick"
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert ran == ["slow", "quick"]  # the cancelled call still ran, as with asyncio.to_thread


async def test_a_blocking_call_never_blocks_the_loop_or_the_next_pass() -> None:
    """SQLite waiting on another process's lock, or a large file hashed the first time, holds up only its own
    trip: the loop keeps running and a call made in a later pass goes to another worker."""
    release = threading.Event()
    blocked = asyncio.ensure_future(batched(release.wait, 5))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await batched(lambda: "later") == "later"
    assert time.monotonic() - started < 1
    assert not blocked.done()
    release.set()
    assert await blocked is True


async def test_a_closed_pool_is_an_error_not_a_hang() -> None:
    loop = asyncio.get_running_loop()
    await loop.shutdown_default_executor()
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(batched(lambda: 1), 5)


def test_store_calls_share_trips_only_on_a_local_store(tmp_path) -> None:
    from farmsync.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "s.sqlite3")
    try:
        assert store_call(store) is batched
    finally:
        store.close()

    from farmsync.store.firestore import FirestoreStore

    assert FirestoreStore.runs_locally is False  # each call waits on the network: one thread per call
    assert store_call(object()) is asyncio.to_thread
