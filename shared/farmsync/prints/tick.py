"""Which prints to sync now: the incremental tick, the backfill, and one archive on demand.

The tick reads the print log for a window on ``created_at`` (see :mod:`farmsync.prints.window`): one request
when nothing is new, whatever order the server lists runs in. It works on every completed run of the window the
cursor has not seen finished, oldest first with bounded concurrency, stops starting work when its time budget is
spent, and moves the cursor's time only up to the oldest run still open, so nothing is skipped when a print
fails, is held by another worker or the budget runs out: the next tick reads that run again.

Without a print log (older Bambuddy) or with SYNC_UNIT=archive the same loop runs over archives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from farmsync import metrics
from farmsync.clients.bambuddy import PRINT_LOG_MAX_LIMIT
from farmsync.clients.http import COUNTERS
from farmsync.errors import InputError, UpstreamNotFound
from farmsync.logs import action, get_logger
from farmsync.prints import window as windows
from farmsync.prints.pipeline import HELD_REASON, IN_PROGRESS, PrintSync, Unit, archive_unit, run_unit
from farmsync.prints.report import ItemOutcome, ItemReport
from farmsync.prints.report import RunReport as RunReport  # callers name it ticks.RunReport
from farmsync.prints.window import Row, Window
from farmsync.store import Cursor, State

if TYPE_CHECKING:
    from farmsync.clients.bambuddy_models import Archive, PrintLogEntry

log = get_logger("prints")

Progress = Callable[[int, int, ItemReport], None]
"""Called after each unit with (units finished, units planned, that unit's report)."""

RUN_STREAM = "print-log"
ARCHIVE_STREAM = "archives"
WAITING_LIST_LIMIT = 5000


async def sync_mode(sync: PrintSync) -> str:
    """``run`` when configured and Bambuddy has a print log, else ``archive``."""
    if sync.settings.sync_unit == "archive":
        return "archive"
    return "run" if await sync.bambuddy.has_print_log() else "archive"


def _row(sync: PrintSync, record: PrintLogEntry | Archive) -> Row:
    status = record.status
    in_progress = status in IN_PROGRESS
    wanted = not in_progress and (status == "completed" or not sync.settings.sync_success_only)
    return Row(record.id, record.created_at, wanted, in_progress)


async def read_window(
    sync: PrintSync, mode: str, since: datetime | None, *, page_size: int = PRINT_LOG_MAX_LIMIT
) -> list[tuple[Row, Unit]]:
    """Every run (or archive) created at or after ``since`` (None: all), each once, oldest first.

    Every status is read, not only ``completed``: a run still printing holds the window open, and one whose
    status a user changes later is seen again while it is inside the window."""
    found: list[tuple[Row, Unit]] = []
    if mode == "run":
        async for entry in sync.bambuddy.iter_print_log(date_from=since, page_size=page_size):
            if _inside(entry, since):
                found.append((_row(sync, entry), run_unit(entry)))
    else:
        day = since.date() if since else None  # the archive list filters on whole days
        async for archive in sync.bambuddy.iter_archives(date_from=day, page_size=page_size):
            if _inside(archive, since):
                found.append((_row(sync, archive), archive_unit(archive)))
    found.sort(key=lambda pair: (pair[0].created_at is None, pair[0].created_at or 0, pair[0].id))
    return found


def _inside(record: PrintLogEntry | Archive, since: datetime | None) -> bool:
    """Inside the window (checked here too: a server that ignored ``date_from`` must not make ticks re-check
    every old run in the store)."""
    return since is None or record.created_at is None or record.created_at >= since


async def legacy_since(sync: PrintSync, mode: str, legacy_id: int) -> datetime | None:
    """Where an old id-only cursor stands in time: the ``created_at`` of the newest-listed run at or below it.

    Read newest first until the first such run (a few pages once, when the cursor is migrated); None when
    there is none (then everything is read, and ids at or below the old cursor still count as finished)."""
    page = sync.settings.backfill_page_size
    source: AsyncIterator[PrintLogEntry] | AsyncIterator[Archive] = (
        sync.bambuddy.iter_print_log(page_size=page)
        if mode == "run"
        else sync.bambuddy.iter_archives(page_size=page)
    )
    async for record in source:
        if record.id <= legacy_id and record.created_at is not None:
            return record.created_at - windows.MARGIN
    return None


async def drive(
    units: Sequence[Unit],
    handler: Callable[[Unit], Awaitable[ItemReport]],
    done: Callable[[int, ItemReport], None],
    *,
    concurrency: int,
    deadline: float | None,
    max_synced: int | None = None,
    progress: Progress | None = None,
) -> str:
    """Run ``handler`` over units in order with at most ``concurrency`` at once; pass each report to ``done``.

    No new unit starts after ``deadline`` (monotonic) or once ``max_synced`` units were synced (units that turn
    out to need nothing do not count). Reports are handed on, not kept, so a long backfill holds none of them.
    Returns why it stopped.
    """
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
            report: ItemReport | None = None
            try:
                report = await handler(units[index])
            finally:
                async with changed:
                    state["inflight"] -= 1
                    if report is not None:
                        done(index, report)
                        if report.outcome is ItemOutcome.SYNCED:
                            state["synced"] += 1
                    state["finished"] += 1
                    changed.notify_all()
                if progress is not None and report is not None:
                    progress(state["finished"], len(units), report)

    await run_all([worker() for _ in range(max(1, min(concurrency, len(units) or 1)))])
    return str(state["stopped"])


class Collect:
    """What a pass keeps of its reports: the bounded :class:`RunReport` and the row ids that finished (for the
    cursor). ``done`` is the callback :func:`drive` hands each report to, in the order units finish."""

    def __init__(self, report: RunReport, todo: Sequence[tuple[Row, Unit]]) -> None:
        self.report = report
        self.todo = todo
        self.finished: set[int] = set()

    @property
    def units(self) -> list[Unit]:
        return [unit for _, unit in self.todo]

    def done(self, index: int, item: ItemReport) -> None:
        self.report.add(item)
        if item.finished:
            self.finished.add(self.todo[index][0].id)

    def in_order(self) -> None:
        """The kept lines in the order the units were planned (oldest first), not the order they finished."""
        position = {unit.label: i for i, (_, unit) in enumerate(self.todo)}
        self.report.items.sort(key=lambda item: position.get(item.key, len(position)))


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
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def save_window(
    sync: PrintSync, stream: str, read: Cursor | None, window: Window, *, rounds: int = 20
) -> Window:
    """Write the cursor unless unchanged; when another tick moved it meanwhile, merge and try again."""
    if window.time is None:  # nothing seen yet: keep whatever is stored
        return window
    version = read.version if read else None
    current = Window.load(read.value if read else None)
    for _ in range(rounds):
        if current.time is not None and current.dump() == window.dump():
            return window
        moved = await sync.store.cas_cursor(stream, version, window.dump())
        if moved is not None:
            return window
        read = await sync.store.get_cursor(stream)
        version = read.version if read else None
        current = Window.load(read.value if read else None)
        window = windows.merge(window, current)
    return window


async def tick(
    sync: PrintSync, *, budget: float | None = None, trigger: str = "tick", progress: Progress | None = None
) -> RunReport:
    """One incremental tick: the runs of the cursor's window it has not seen finished."""
    started = time.monotonic()
    before = _counters()
    mode = await sync_mode(sync)
    stream = RUN_STREAM if mode == "run" else ARCHIVE_STREAM
    read = await sync.store.get_cursor(stream)
    window = Window.load(read.value if read else None)
    since = window.since()
    if window.time is None and window.legacy_id:
        since = await legacy_since(sync, mode, window.legacy_id)
    found = await read_window(sync, mode, since)
    todo = [(row, unit) for row, unit in found if row.wanted and not window.is_done(row)]
    budget = sync.settings.tick_time_budget_seconds if budget is None else budget
    report = RunReport(mode=trigger, unit=mode, cursor_before=window.label)
    collect = Collect(report, todo)
    report.stopped = await drive(
        collect.units,
        sync.sync_unit,
        collect.done,
        concurrency=sync.settings.sync_concurrency,
        deadline=started + budget,
        progress=progress,
    )
    collect.in_order()
    after = await _move_window(sync, stream, read, window, found, collect.finished)
    report.cursor_after = after.label
    report.seconds = round(time.monotonic() - started, 3)
    if mode == "archive" and sync.settings.sync_unit == "run":
        report.notes.append("Bambuddy has no print log: synced per archive (SYNC_UNIT=archive behaviour)")
    await _finish(sync, report, before)
    return report


async def _move_window(
    sync: PrintSync,
    stream: str,
    read: Cursor | None,
    window: Window,
    found: Sequence[tuple[Row, Unit]],
    finished: set[int],
) -> Window:
    moved = windows.advance(window, [row for row, _ in found], finished)
    return await save_window(sync, stream, read, moved)


async def backfill(
    sync: PrintSync,
    *,
    max_archives: int | None = None,
    budget: float | None = None,
    retry_now: bool = False,
    progress: Progress | None = None,
) -> RunReport:
    """Every print not yet synced, oldest first, whatever the cursor says; at most ``max_archives`` synced.

    The store decides what is done; with an empty store every print is looked up in InvenTree (by batch)
    before anything is written. ``retry_now`` retries prints waiting after a failure without waiting."""
    started = time.monotonic()
    before = _counters()
    mode = await sync_mode(sync)
    stream = RUN_STREAM if mode == "run" else ARCHIVE_STREAM
    read = await sync.store.get_cursor(stream)
    found = await read_window(sync, mode, None, page_size=sync.settings.backfill_page_size)
    todo = [(row, unit) for row, unit in found if row.wanted]
    waiting = await waiting_keys(sync) if retry_now else set()

    async def handler(unit: Unit) -> ItemReport:
        return await sync.sync_unit(unit, retry_parked=unit.label in waiting)

    report = RunReport(mode="backfill", unit=mode)
    collect = Collect(report, todo)
    report.stopped = await drive(
        collect.units,
        handler,
        collect.done,
        concurrency=sync.settings.sync_concurrency,
        deadline=started + budget if budget else None,
        max_synced=max_archives,
        progress=progress,
    )
    # A backfill read everything, so the same rule moves the cursor and the next tick starts after it.
    window = Window.load(read.value if read else None)
    collect.in_order()
    after = await _move_window(sync, stream, read, window, found, collect.finished)
    report.cursor_after = after.label
    report.seconds = round(time.monotonic() - started, 3)
    if retry_now:
        report.notes.append(f"retried now: {len(waiting)} print(s) that were waiting after a failure")
    await _finish(sync, report, before)
    return report


async def waiting_keys(sync: PrintSync) -> set[str]:
    """Units waiting for their retry time after a failure (``run:12``), from one store read per namespace."""
    keys: set[str] = set()
    for namespace in ("run", "archive"):
        for record in await sync.store.list(namespace, State.FAILED, WAITING_LIST_LIMIT):
            keys.add(f"{namespace}:{record.key}")
    return keys


class ArchiveNotFound(InputError):
    """Bambuddy has no such archive (never had, or deleted it): the caller asked for something absent."""

    status_code = 404


async def sync_archive(sync: PrintSync, archive_id: int, *, force: bool = False) -> RunReport:
    """One archive on demand: each of its completed runs (run mode), or the archive itself."""
    started = time.monotonic()
    before = _counters()
    mode = await sync_mode(sync)
    try:
        archive = await sync.archive(archive_id)
    except UpstreamNotFound:
        raise ArchiveNotFound(
            f"Bambuddy has no archive {archive_id} (never created, or deleted)",
            field="archive_id",
            expected="the id of an archive Bambuddy lists",
        ) from None
    units: list[Unit] = []
    if mode == "run":
        runs = await sync.bambuddy.archive_runs(archive_id)
        units = sorted((run_unit(r) for r in runs), key=lambda u: int(u.key))
    if not units:
        units = [archive_unit(archive)]
    results = [await sync.sync_unit(u, force=force, retry_parked=True) for u in units]
    report = RunReport(mode="archive", unit=mode, items=results, seconds=round(time.monotonic() - started, 3))
    await _finish(sync, report, before)
    return report


def _counters() -> tuple[int, int]:
    return COUNTERS.total("bambuddy"), COUNTERS.total("inventree")


def note_held(report: RunReport) -> None:
    """Runs another worker's claim still holds (after a crash, until its lease runs out): say which and when
    they will be picked up, and do not call the run complete."""
    held = [i for i in report.items if i.outcome is ItemOutcome.PENDING and i.reason == HELD_REASON]
    if held and report.stopped == "complete":
        report.stopped = "held"
    for item in held:
        when = item.retry_at.strftime("%H:%M:%S UTC") if item.retry_at else "soon"
        name = (item.name or "print")[:20]
        report.notes.append(f"{name!r} ({item.key}): held by a claim until {when}")
    if held:
        report.notes.append("held prints are picked up by the first tick after their claim runs out")


RUN_KINDS = {"backfill": "backfill", "archive": "print_archive"}


async def _finish(sync: PrintSync, report: RunReport, before: tuple[int, int]) -> None:
    """Notes, request counts, the log line and metrics; then tell an operator about parked prints."""
    note_held(report)
    metrics.run_duration(RUN_KINDS.get(report.mode, "print_tick"), report.seconds)
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
    names = {item.key: item.name for item in report.items}
    if sync.settings.notifies("parked"):
        from farmsync import notify

        await notify.parked_prints(sync.settings, sync.store, names)
