"""Which prints to sync now: the incremental tick, the backfill, and one archive on demand.

The tick reads the print log newest-first only down to the stored cursor (an idle tick is one Bambuddy request
and no InvenTree request), processes the new runs oldest-first with bounded concurrency, stops starting work when
its time budget is spent, and moves the cursor only over the contiguous prefix of finished work, so nothing is
skipped when a print fails or the budget runs out: the next tick resumes there.

Without a print log (older Bambuddy) or with SYNC_UNIT=archive the same loop runs over archives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from farmsync.clients.http import COUNTERS
from farmsync.logs import action, get_logger
from farmsync.prints.pipeline import PrintSync, Unit, archive_unit, run_unit
from farmsync.prints.report import ItemOutcome, ItemReport, RunReport
from farmsync.store import cursors

log = get_logger("prints")

Progress = Callable[[int, int, ItemReport], None]
"""Called after each unit with (units finished, units planned, that unit's report)."""

RUN_STREAM = "print-log"
ARCHIVE_STREAM = "archives"


async def sync_mode(sync: PrintSync) -> str:
    """``run`` when configured and Bambuddy has a print log, else ``archive``."""
    if sync.settings.sync_unit == "archive":
        return "archive"
    return "run" if await sync.bambuddy.has_print_log() else "archive"


async def new_units(sync: PrintSync, mode: str, after_id: int) -> list[Unit]:
    """Units newer than ``after_id``, oldest first (the print log and archives list are newest first)."""
    units: list[Unit] = []
    page = sync.settings.backfill_page_size
    if mode == "run":
        status = "completed" if sync.settings.sync_success_only else None
        async for entry in sync.bambuddy.iter_print_log(status=status, page_size=page):
            if entry.id <= after_id:
                break
            units.append(run_unit(entry))
    else:
        async for archive in sync.bambuddy.iter_archives(page_size=page):
            if archive.id <= after_id:
                break
            units.append(archive_unit(archive))
    units.sort(key=lambda u: int(u.key))
    return units


async def process(
    units: Sequence[Unit],
    handler: Callable[[Unit], Awaitable[ItemReport]],
    *,
    concurrency: int,
    deadline: float | None,
    max_synced: int | None = None,
    progress: Progress | None = None,
) -> tuple[list[ItemReport | None], str]:
    """Run ``handler`` over units in order with at most ``concurrency`` at once.

    No new unit starts after ``deadline`` (monotonic) or once ``max_synced`` units were synced (units that turn
    out to need nothing do not count). Returns per-unit reports (None: not started) and why it stopped.
    """
    results: list[ItemReport | None] = [None] * len(units)
    state: dict[str, Any] = {"next": 0, "synced": 0, "inflight": 0, "finished": 0, "stopped": "complete"}
    changed = asyncio.Condition()

    async def worker() -> None:
        while True:
            async with changed:
                while (
                    max_synced is not None
                    and state["inflight"]
                    and state["synced"] + state["inflight"] >= max_synced
                ):
                    await changed.wait()
                if state["next"] >= len(units):
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    state["stopped"] = "time_budget"
                    return
                if max_synced is not None and state["synced"] >= max_synced:
                    state["stopped"] = "max_archives"
                    return
                index = state["next"]
                state["next"] += 1
                state["inflight"] += 1
            try:
                results[index] = await handler(units[index])
            finally:
                async with changed:
                    state["inflight"] -= 1
                    report = results[index]
                    if report is not None and report.outcome is ItemOutcome.SYNCED:
                        state["synced"] += 1
                    state["finished"] += 1
                    changed.notify_all()
                if progress is not None and report is not None:
                    progress(state["finished"], len(units), report)

    await run_all([worker() for _ in range(max(1, min(concurrency, len(units) or 1)))])
    return results, str(state["stopped"])


async def run_all(coroutines: list[Awaitable[None]]) -> None:
    """Run workers together; if one dies, cancel the rest and re-raise, as a dying process would stop them all.

    (``asyncio.gather`` would leave the siblings running in the background, still writing under leases that
    another worker may take over.)
    """
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def contiguous_high(units: Sequence[Unit], results: Sequence[ItemReport | None], start: int) -> int:
    """The highest id such that every unit up to it is finished (synced, skipped or parked)."""
    high = start
    for unit, report in zip(units, results, strict=True):
        if report is None or not report.finished:
            break
        high = int(unit.key)
    return high


async def advance_cursor(sync: PrintSync, stream: str, value: int) -> int:
    """Move the stream's cursor forward to ``value`` (never back: another tick may be ahead)."""
    return await cursors.advance(sync.store, stream, value)


async def tick(
    sync: PrintSync, *, budget: float | None = None, trigger: str = "tick", progress: Progress | None = None
) -> RunReport:
    """One incremental tick: new prints since the cursor."""
    started = time.monotonic()
    before = _counters()
    mode = await sync_mode(sync)
    stream = RUN_STREAM if mode == "run" else ARCHIVE_STREAM
    cursor = await sync.store.get_cursor(stream)
    after = int(cursor.value.get("id", 0)) if cursor else 0
    units = await new_units(sync, mode, after)
    budget = sync.settings.tick_time_budget_seconds if budget is None else budget
    results, stopped = await process(
        units,
        sync.sync_unit,
        concurrency=sync.settings.sync_concurrency,
        deadline=started + budget,
        progress=progress,
    )
    high = contiguous_high(units, results, after)
    if high > after:
        high = await advance_cursor(sync, stream, high)
    report = RunReport(
        mode=trigger,
        unit=mode,
        items=[r for r in results if r is not None],
        cursor_before=after,
        cursor_after=high,
        stopped=stopped,
        seconds=round(time.monotonic() - started, 3),
    )
    if mode == "archive" and sync.settings.sync_unit == "run":
        report.notes.append("Bambuddy has no print log: synced per archive (SYNC_UNIT=archive behaviour)")
    _finish(report, before)
    return report


async def backfill(
    sync: PrintSync,
    *,
    max_archives: int | None = None,
    budget: float | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Every print not yet synced, oldest first, whatever the cursor says; at most ``max_archives`` synced."""
    started = time.monotonic()
    before = _counters()
    mode = await sync_mode(sync)
    units = await new_units(sync, mode, 0)
    results, stopped = await process(
        units,
        sync.sync_unit,
        concurrency=sync.settings.sync_concurrency,
        deadline=started + budget if budget else None,
        max_synced=max_archives,
        progress=progress,
    )
    report = RunReport(
        mode="backfill",
        unit=mode,
        items=[r for r in results if r is not None],
        stopped=stopped,
        seconds=round(time.monotonic() - started, 3),
    )
    # A backfill walks everything, so the same contiguous-prefix rule lets the next tick start after it.
    stream = RUN_STREAM if mode == "run" else ARCHIVE_STREAM
    high = contiguous_high(units, results, 0)
    report.cursor_after = await advance_cursor(sync, stream, high) if high else None
    _finish(report, before)
    return report


async def sync_archive(sync: PrintSync, archive_id: int, *, force: bool = False) -> RunReport:
    """One archive on demand: each of its completed runs (run mode), or the archive itself."""
    started = time.monotonic()
    before = _counters()
    mode = await sync_mode(sync)
    archive = await sync.archive(archive_id)
    units: list[Unit] = []
    if mode == "run":
        runs = await sync.bambuddy.archive_runs(archive_id)
        units = sorted((run_unit(r) for r in runs), key=lambda u: int(u.key))
    if not units:
        units = [archive_unit(archive)]
    results = [await sync.sync_unit(u, force=force, retry_parked=True) for u in units]
    report = RunReport(mode="archive", unit=mode, items=results, seconds=round(time.monotonic() - started, 3))
    _finish(report, before)
    return report


def _counters() -> tuple[int, int]:
    return COUNTERS.total("bambuddy"), COUNTERS.total("inventree")


def _finish(report: RunReport, before: tuple[int, int]) -> None:
    report.bambuddy_requests = COUNTERS.total("bambuddy") - before[0]
    report.inventree_requests = COUNTERS.total("inventree") - before[1]
    totals = report.totals()
    action(
        log,
        f"{report.mode} finished",
        unit=report.unit,
        stopped=report.stopped,
        seconds=report.seconds,
        cursor=report.cursor_after,
        bambuddy_requests=report.bambuddy_requests,
        inventree_requests=report.inventree_requests,
        **{k: v for k, v in totals.items() if v},
    )
