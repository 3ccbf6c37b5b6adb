"""Print sync as plain use cases: the tick, backfill, one archive, status, and what a notification triggers.

The CLI, ``farmsync serve``'s scheduler, the benchmarks and the HTTP handlers all call these, so a print takes the same path however it was asked for.
"""

from __future__ import annotations

import time
from typing import Any

from farmsync.coalesce import coalesced
from farmsync.human import iso_time, with_iso_times
from farmsync.prints import tick as ticks
from farmsync.prints.pipeline import PrintSync
from farmsync.prints.window import Window
from farmsync.services import Services
from farmsync.store import State

NOTIFICATION_BUDGET_SECONDS = 20.0  # Bambuddy gives up after 30 s and never retries
TRIGGER_EVENTS = frozenset({"print_complete", "print_failed", "print_stopped"})
IGNORED_EVENTS_NOTE = "only print_complete, print_failed and print_stopped trigger a sync"


def print_sync(services: Services) -> PrintSync:
    services.settings.require("prints")
    return PrintSync(services.settings, services.store, services.bambuddy(), services.inventree())


async def remember(services: Services, name: str, report: ticks.RunReport) -> None:
    """Keep the last run of each kind for /sync/status and the dashboard."""
    await services.store.put_value(
        "meta",
        f"last-{name}",
        {
            "at": time.time(),
            "stopped": report.stopped,
            "seconds": report.seconds,
            "totals": report.totals(),
            "cursor": report.cursor_after,
            "unit": report.unit,
        },
    )


async def run_tick(
    services: Services, *, budget: float | None = None, trigger: str = "tick"
) -> ticks.RunReport:
    """One incremental tick, remembered for status pages.

    Concurrent calls in one process are coalesced (farmsync.coalesce): a storm of webhooks costs at most the tick
    in flight plus one queued tick, and every caller still answers after a tick that started after it arrived.
    """

    async def one_tick() -> ticks.RunReport:
        report = await ticks.tick(print_sync(services), budget=budget, trigger=trigger)
        await remember(services, "tick", report)
        return report

    return await coalesced(services.state, "print-tick", one_tick)


async def on_notification(services: Services, event: str | None) -> dict[str, Any]:
    """Bambuddy's notification carries no ids: a finished print's event only triggers a tick, answered within
    20 s; any other event is acknowledged and ignored."""
    if event is not None and event not in TRIGGER_EVENTS:
        return {"accepted": True, "event": event, "triggered": False, "note": IGNORED_EVENTS_NOTE}
    budget = min(NOTIFICATION_BUDGET_SECONDS, services.settings.tick_time_budget_seconds)
    report = await run_tick(services, budget=budget, trigger="webhook")
    return {"accepted": True, "event": event, "triggered": True, **report.as_dict()}


async def backfill(
    services: Services,
    *,
    max_archives: int | None = None,
    budget: float | None = None,
    retry_now: bool = False,
    progress: ticks.Progress | None = None,
) -> ticks.RunReport:
    """Sync every completed print not yet synced, remembered as the last backfill."""
    report = await ticks.backfill(
        print_sync(services),
        max_archives=max_archives,
        budget=budget,
        retry_now=retry_now,
        progress=progress,
    )
    await remember(services, "backfill", report)
    return report


async def sync_archive(services: Services, archive_id: int, *, force: bool = False) -> ticks.RunReport:
    """Sync one archive now (each of its completed runs); ``force`` refreshes an already synced print."""
    return await ticks.sync_archive(print_sync(services), archive_id, force=force)


async def print_status(services: Services) -> dict[str, Any]:
    """Counts per state, the cursor, the last tick and backfill, pending, parked and recent failures."""
    store = services.store
    out: dict[str, Any] = {"unit": services.settings.sync_unit.value}
    for namespace in ("run", "archive"):
        counts = await store.counts(namespace)
        out[f"{namespace}s"] = counts.by_state
    cursors = {}
    for stream in (ticks.RUN_STREAM, ticks.ARCHIVE_STREAM):
        cursor = await store.get_cursor(stream)
        if cursor is not None:
            window = Window.load(cursor.value)
            cursors[stream] = (
                {"time": iso_time(window.time), "finished_in_window": len(window.done)}
                if window.time
                else {"id": window.legacy_id}
            )
    out["cursor"] = cursors
    out["last_tick"] = with_iso_times(await store.get_value("meta", "last-tick"))
    out["last_backfill"] = with_iso_times(await store.get_value("meta", "last-backfill"))

    def brief(record: Any) -> dict[str, Any]:
        return {
            "key": f"{record.namespace}:{record.key}",
            "attempts": record.attempts,
            "error": record.last_error,
            # a failed print's retry time, or when a held claim runs out and another worker may take it over
            "retry_at": iso_time(record.not_before or record.lease_until),
            "updated_at": iso_time(record.updated_at),
        }

    for label, state in (("pending", State.FAILED), ("parked", State.PARKED), ("in_progress", State.CLAIMED)):
        records = [*await store.list("run", state, 50), *await store.list("archive", state, 50)]
        out[label] = [brief(r) for r in sorted(records, key=lambda r: -r.updated_at)[:50]]
    recent = [*await store.list("run", State.DONE, 20), *await store.list("archive", State.DONE, 20)]
    out["recent"] = [
        {"key": f"{r.namespace}:{r.key}", **(r.result or {}), "at": iso_time(r.updated_at)}
        for r in sorted(recent, key=lambda r: (-r.updated_at, -_numeric(r.key)))[:20]
    ]
    out["recent_failures"] = (out["pending"] + out["parked"])[:20]
    return out


def _numeric(key: str) -> int:
    """Keys are print-log or archive ids: newest first when several finished in the same instant."""
    return int(key) if key.isdigit() else 0
