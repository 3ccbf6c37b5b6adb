"""The coalescer: N concurrent callers cost at most two runs, and nobody is answered by a run older than them."""

from __future__ import annotations

import asyncio

import pytest

from farmsync.coalesce import Coalescer, coalescer


class Work:
    """Work that records when each run started and waits to be released, so tests control the interleaving."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.release = asyncio.Event()
        self.clock = 0

    async def __call__(self) -> int:
        run = len(self.started)
        self.started.append(self.clock)
        await self.release.wait()
        return run


async def test_callers_during_a_run_share_one_queued_run_that_starts_after_them() -> None:
    work = Work()
    shared: Coalescer[int] = Coalescer(asyncio.get_running_loop())
    first = asyncio.ensure_future(shared.run(work))
    while not work.started:
        await asyncio.sleep(0)
    work.clock = 1  # everything below arrives after run 0 started
    later = [asyncio.ensure_future(shared.run(work)) for _ in range(50)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert work.started == [0], "the queued run must wait for the one in flight"
    work.release.set()
    results = await asyncio.gather(first, *later)
    assert results[0] == 0
    assert set(results[1:]) == {1}, "late callers are answered by the run that started after they arrived"
    assert shared.runs == 2
    assert work.started == [0, 1]


async def test_a_caller_after_everything_finished_starts_a_new_run() -> None:
    work = Work()
    work.release.set()
    shared: Coalescer[int] = Coalescer(asyncio.get_running_loop())
    assert await shared.run(work) == 0
    assert await shared.run(work) == 1
    assert shared.runs == 2


async def test_an_error_reaches_every_caller_of_that_run_and_the_next_run_still_happens() -> None:
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise RuntimeError("upstream down")
        return calls

    shared: Coalescer[int] = Coalescer(asyncio.get_running_loop())
    first = asyncio.ensure_future(shared.run(failing))
    await asyncio.sleep(0)
    second = [asyncio.ensure_future(shared.run(failing)) for _ in range(3)]
    with pytest.raises(RuntimeError, match="upstream down"):
        await first
    assert await asyncio.gather(*second) == [2, 2, 2]


async def test_a_cancelled_caller_does_not_cancel_the_shared_run() -> None:
    work = Work()
    shared: Coalescer[int] = Coalescer(asyncio.get_running_loop())
    first = asyncio.ensure_future(shared.run(work))
    other = asyncio.ensure_future(shared.run(work))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    work.release.set()
    assert await other == 1
    assert shared.runs == 2


async def test_one_coalescer_per_owner_and_loop() -> None:
    owner: dict[str, object] = {}
    a = coalescer(owner, "tick")
    assert coalescer(owner, "tick") is a
    assert coalescer(owner, "other") is not a
    other_loop = asyncio.new_event_loop()
    owner["tick"] = Coalescer(other_loop)  # one left over from another loop (a previous test)
    assert coalescer(owner, "tick").loop is asyncio.get_running_loop()
    other_loop.close()
