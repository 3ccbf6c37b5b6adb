"""The tick's scheduling rules: bounded concurrency, budget, max_archives, and the contiguous cursor."""

from __future__ import annotations

import asyncio
import time

from farmsync.prints.pipeline import Unit
from farmsync.prints.report import ItemOutcome, ItemReport
from farmsync.prints.tick import contiguous_high, process


def units(n: int) -> list[Unit]:
    return [Unit("run", str(i), 1, i, f"bambuddy-1-{i}", "completed") for i in range(1, n + 1)]


def report(unit: Unit, outcome: ItemOutcome) -> ItemReport:
    return ItemReport(key=unit.label, outcome=outcome)


async def test_concurrency_is_bounded_and_all_run() -> None:
    running = peak = 0

    async def handler(unit: Unit) -> ItemReport:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return report(unit, ItemOutcome.SYNCED)

    results, stopped = await process(units(20), handler, concurrency=4, deadline=None)
    assert stopped == "complete" and all(r and r.outcome is ItemOutcome.SYNCED for r in results)
    assert peak == 4


async def test_max_synced_counts_only_synced_units() -> None:
    async def handler(unit: Unit) -> ItemReport:
        await asyncio.sleep(0)
        outcome = ItemOutcome.SKIPPED if int(unit.key) % 2 else ItemOutcome.SYNCED
        return report(unit, outcome)

    results, stopped = await process(units(20), handler, concurrency=3, deadline=None, max_synced=3)
    synced = [r for r in results if r and r.outcome is ItemOutcome.SYNCED]
    assert len(synced) == 3 and stopped == "max_archives"


async def test_deadline_stops_starting_new_work() -> None:
    async def handler(unit: Unit) -> ItemReport:
        await asyncio.sleep(0.05)
        return report(unit, ItemOutcome.SYNCED)

    results, stopped = await process(units(50), handler, concurrency=2, deadline=time.monotonic() + 0.12)
    started = [r for r in results if r is not None]
    assert stopped == "time_budget" and 2 <= len(started) < 50
    assert results[len(started) :] == [None] * (50 - len(started))


def test_cursor_moves_only_over_contiguous_finished_work() -> None:
    us = units(5)
    done = [report(u, ItemOutcome.SYNCED) for u in us]
    assert contiguous_high(us, done, 0) == 5
    mixed = [done[0], report(us[1], ItemOutcome.SKIPPED), report(us[2], ItemOutcome.FAILED), done[3], done[4]]
    assert contiguous_high(us, mixed, 0) == 2
    parked = [done[0], report(us[1], ItemOutcome.PARKED), None, None, None]
    assert contiguous_high(us, parked, 0) == 2
    pending = [report(us[0], ItemOutcome.PENDING), *done[1:]]
    assert contiguous_high(us, pending, 7) == 7
