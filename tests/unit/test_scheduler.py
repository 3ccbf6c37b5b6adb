"""The in-process scheduler: runs each job every interval, survives a failing job, and stops gracefully."""

from __future__ import annotations

import asyncio

from farmsync.scheduler import Job, Scheduler


async def test_runs_on_startup_and_every_interval_in_order() -> None:
    calls: list[str] = []

    async def job(name: str) -> dict[str, int]:
        calls.append(name)
        return {"totals": 1}

    scheduler = Scheduler(
        [Job("prints", lambda: job("prints")), Job("gcode", lambda: job("gcode"))], 0.05, on_startup=True
    )
    scheduler.start()
    await asyncio.sleep(0.13)
    await scheduler.stop()
    assert calls[:4] == ["prints", "gcode", "prints", "gcode"]
    assert scheduler.last["prints"]["ok"] and scheduler.last["gcode"]["ok"]


async def test_without_startup_the_first_run_waits_an_interval() -> None:
    calls: list[str] = []

    async def job() -> None:
        calls.append("x")

    scheduler = Scheduler([Job("x", job)], 10, on_startup=False)
    scheduler.start()
    await asyncio.sleep(0.05)
    await scheduler.stop()
    assert calls == []


async def test_a_failing_job_does_not_stop_the_schedule() -> None:
    calls: list[str] = []

    async def broken() -> None:
        calls.append("broken")
        raise RuntimeError("InvenTree down")

    async def fine() -> None:
        calls.append("fine")

    scheduler = Scheduler([Job("broken", broken), Job("fine", fine)], 0.02, on_startup=True)
    scheduler.start()
    await asyncio.sleep(0.07)
    await scheduler.stop()
    assert calls.count("fine") >= 2
    assert scheduler.last["broken"] == {
        "at": scheduler.last["broken"]["at"],
        "ok": False,
        "error": "InvenTree down",
    }


async def test_stop_lets_the_job_in_flight_finish() -> None:
    finished = asyncio.Event()
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.set()

    scheduler = Scheduler([Job("slow", slow)], 60, on_startup=True, grace=5)
    scheduler.start()
    await started.wait()
    await scheduler.stop()
    assert finished.is_set() and scheduler.last["slow"]["ok"]


async def test_stop_cancels_a_job_that_overstays_the_grace_period() -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    scheduler = Scheduler([Job("stuck", stuck)], 60, on_startup=True, grace=0.1)
    scheduler.start()
    await started.wait()
    await scheduler.stop()
    assert cancelled.is_set()
