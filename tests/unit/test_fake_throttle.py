"""The fake printers' throttle on a virtual clock: the nominal rate, never more, whatever the machine's load."""

from __future__ import annotations

import asyncio

import pytest

from farmsync_sim.fakehttp import Throttle


class Clock:
    """Virtual time; ``sleep`` advances it by the delay plus ``oversleep`` (a busy machine wakes up late)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.oversleep = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay + self.oversleep


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(asyncio, "sleep", made.sleep)
    return made


async def body(throttle: Throttle, chunks: int, size: int, clock: Clock, *, late_reads: float = 0.0) -> float:
    """Time for one body of ``chunks`` reads; each read after the first comes ``late_reads`` s late."""
    start = clock.now
    for index in range(chunks):
        if index:
            clock.now += late_reads
        await throttle.take(size, continuing=index > 0)
    return clock.now - start


async def test_an_unloaded_fake_takes_exactly_the_nominal_time(clock: Clock) -> None:
    throttle = Throttle(100_000, clock=clock)
    assert await body(throttle, 20, 5_000, clock) == pytest.approx(1.0)


async def test_late_wake_ups_and_late_reads_inside_a_body_are_caught_up(clock: Clock) -> None:
    throttle = Throttle(100_000, clock=clock)
    clock.oversleep = 0.01  # every pacing sleep wakes 10 ms late
    took = await body(throttle, 20, 5_000, clock, late_reads=0.02)  # and the loop reads 20 ms late
    assert took == pytest.approx(1.0, abs=0.05)  # the old throttle took 1.0 + 19 × 0.02 + ... ≈ 1.4 s


async def test_a_long_stall_of_the_sender_is_not_banked(clock: Clock) -> None:
    throttle = Throttle(100_000, clock=clock)
    took = await body(throttle, 20, 5_000, clock, late_reads=0.2)  # the client sends nothing for 0.2 s
    assert took >= 1.0 + 19 * (0.2 - Throttle.CREDIT) - 1e-9


async def test_idle_time_between_requests_is_never_a_burst(clock: Clock) -> None:
    throttle = Throttle(100_000, clock=clock)
    await body(throttle, 20, 5_000, clock)
    clock.now += 30  # idle
    assert await body(throttle, 20, 5_000, clock) == pytest.approx(1.0)
