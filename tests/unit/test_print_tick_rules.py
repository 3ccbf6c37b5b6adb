"""The tick's scheduling rules: bounded concurrency, budget, max_archives, and the cursor's time window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from farmsync.prints import window as windows
from farmsync.prints.pipeline import Unit
from farmsync.prints.report import ItemOutcome, ItemReport
from farmsync.prints.tick import drive
from farmsync.prints.window import Row, Window


def units(n: int) -> list[Unit]:
    return [Unit("run", str(i), 1, i, f"bambuddy-1-{i}", "completed") for i in range(1, n + 1)]


def report(unit: Unit, outcome: ItemOutcome) -> ItemReport:
    return ItemReport(key=unit.label, outcome=outcome)


async def process(
    todo: list[Unit], handler: Callable[[Unit], Awaitable[ItemReport]], **options: Any
) -> tuple[list[ItemReport | None], str]:
    """``drive`` with every unit's report kept by position (None: not started)."""
    results: list[ItemReport | None] = [None] * len(todo)

    def keep(index: int, item: ItemReport) -> None:
        results[index] = item

    stopped = await drive(todo, handler, keep, **options)
    return results, stopped


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


T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def row(id_: int, seconds: int, *, wanted: bool = True, printing: bool = False) -> Row:
    return Row(id_, T0 + timedelta(seconds=seconds), wanted, printing)


def test_window_time_stops_at_the_oldest_open_run() -> None:
    rows = [row(1, 0), row(2, 10), row(3, 20), row(4, 30)]
    after = windows.advance(Window(), rows, finished={1, 2, 4})
    assert after.time == T0 + timedelta(seconds=20)  # run 3 failed: it stays inside the next window
    assert set(after.done) == {1, 2, 4}
    settled = windows.advance(after, rows, finished={3})
    assert settled.time == T0 + timedelta(seconds=30) and set(settled.done) == {1, 2, 3, 4}


def test_same_second_runs_and_any_order_are_each_seen() -> None:
    """Two runs in one second, listed 24 then 23 or 23 then 24: the window does not care about order."""
    first = windows.advance(Window(), [row(23, 5)], finished={23})
    rows = [row(23, 5), row(24, 5)]  # 24 committed late in the same second
    assert [r.id for r in rows if not first.is_done(r)] == [24]
    after = windows.advance(first, rows, finished={24})
    assert set(after.done) == {23, 24}


def test_printing_run_holds_the_window_and_failed_runs_are_not_marked_done() -> None:
    rows = [row(1, 0, wanted=False, printing=True), row(2, 10), row(3, 20, wanted=False)]
    after = windows.advance(Window(), rows, finished={2})
    assert after.time == T0 and set(after.done) == {2}  # 3 may be PATCHed to completed later


def test_old_id_cursor_counts_ids_at_or_below_it_as_done() -> None:
    legacy = Window.load({"id": 7, "at": 1.0})
    assert legacy.legacy_id == 7 and legacy.time is None
    after = windows.advance(legacy, [row(6, 0), row(7, 1), row(8, 2)], finished={8})
    assert after.legacy_id is None and set(after.done) == {6, 7, 8}
    assert Window.load(after.dump()).dump() == after.dump()


def test_done_entries_older_than_the_margin_are_dropped_and_merge_keeps_both() -> None:
    old = windows.advance(Window(), [row(1, 0)], finished={1})
    later = windows.advance(old, [row(2, int(windows.MARGIN.total_seconds()) + 60)], finished={2})
    assert set(later.done) == {2}
    other = windows.advance(old, [row(3, 30)], finished={3})
    merged = windows.merge(other, windows.advance(old, [row(2, 20)], finished={2}))
    assert merged.time == T0 + timedelta(seconds=30) and set(merged.done) == {1, 2, 3}
