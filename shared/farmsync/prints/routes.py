"""HTTP handlers for print sync: the webhook, the tick, backfill, one archive, and status."""

from __future__ import annotations

import time
from typing import Any

from farmsync.coalesce import coalesced
from farmsync.errors import InputError
from farmsync.human import iso_time, with_iso_times
from farmsync.prints import tick as ticks
from farmsync.prints.pipeline import PrintSync
from farmsync.prints.window import Window
from farmsync.services import Services, get_services
from farmsync.store import State
from farmsync.web.call import Call

WEBHOOK_BUDGET_SECONDS = 20.0  # Bambuddy gives up after 30 s and never retries
WEBHOOK_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Bambuddy attaches the finish photo as base64 ``image`` (bodies up to about 3.4 MB) and never retries a 413.
The body is only a trigger: nothing in it, the image least of all, is stored or logged."""
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


async def webhook(call: Call) -> Any:
    """Bambuddy's notification carries no ids: it only triggers an incremental tick (answered within 20 s)."""
    payload = await call.json(required=True, limit=WEBHOOK_MAX_BODY_BYTES)
    if not isinstance(payload, dict):
        raise InputError(
            "the webhook body must be a JSON object", field="body", expected="a JSON object", status_code=422
        )
    event = payload.get("event")
    if event is not None and not isinstance(event, str):
        raise InputError(
            "'event' must be a string",
            field="event",
            expected="a string such as print_complete",
            status_code=422,
        )
    if event is not None and event not in TRIGGER_EVENTS:
        return {"accepted": True, "event": event, "triggered": False, "note": IGNORED_EVENTS_NOTE}
    services = get_services()
    budget = min(WEBHOOK_BUDGET_SECONDS, services.settings.tick_time_budget_seconds)
    report = await run_tick(services, budget=budget, trigger="webhook")
    return {"accepted": True, "event": event, "triggered": True, **report.as_dict()}


async def run_tick(
    services: Services, *, budget: float | None = None, trigger: str = "tick"
) -> ticks.RunReport:
    """One incremental tick, remembered for status pages (the scheduler and the CLI call this too).

    Concurrent calls in one process are coalesced (farmsync.coalesce): a storm of webhooks costs at most the tick
    in flight plus one queued tick, and every caller still answers after a tick that started after it arrived.
    """

    async def one_tick() -> ticks.RunReport:
        report = await ticks.tick(print_sync(services), budget=budget, trigger=trigger)
        await remember(services, "tick", report)
        return report

    return await coalesced(services.state, "print-tick", one_tick)


async def tick(call: Call) -> Any:
    """One incremental tick (Cloud Scheduler HTTP, or a Pub/Sub CloudEvent whose body we do not need)."""
    await call.body()  # a CloudEvent or an empty POST: the content carries no options we rely on
    return (await run_tick(get_services())).as_dict()


async def backfill(call: Call) -> Any:
    from farmsync.web.app import BUDGET, MAX_ARCHIVES  # the bounds the API description states

    max_archives = MAX_ARCHIVES.read_integer(call)
    budget = BUDGET.read_integer(call)
    retry = call.choice("retry", ("now",))
    services = get_services()
    report = await ticks.backfill(
        print_sync(services),
        max_archives=max_archives,
        budget=float(budget) if budget else None,
        retry_now=retry == "now",
    )
    await remember(services, "backfill", report)
    return report.as_dict()


async def sync_archive(call: Call) -> Any:
    force = bool(call.flag("force", False))
    archive_id = int(call.path_params["archive_id"])
    services = get_services()
    report = await ticks.sync_archive(print_sync(services), archive_id, force=force)
    return report.as_dict()


async def status(call: Call) -> Any:
    """Counts per state, the cursor, the last tick and backfill, pending, parked and recent failures."""
    services = get_services()
    return await print_status(services)


async def print_status(services: Services) -> dict[str, Any]:
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
