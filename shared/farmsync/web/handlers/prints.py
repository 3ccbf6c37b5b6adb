"""Print sync over HTTP: Bambuddy's webhook, the scheduled tick, backfill, one archive, and status."""

from __future__ import annotations

from typing import Any

from farmsync.errors import InputError
from farmsync.services import get_services
from farmsync.web.call import Call

WEBHOOK_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Bambuddy attaches the finish photo as base64 ``image`` (bodies up to about 3.4 MB) and never retries a 413.
The body is only a trigger: nothing in it, the image least of all, is stored or logged."""


async def webhook(call: Call) -> Any:
    """Bambuddy's notification carries no ids: it only triggers an incremental tick (answered within 20 s)."""
    from farmsync.prints import service

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
    return await service.on_notification(get_services(), event)


async def tick(call: Call) -> Any:
    """One incremental tick (Cloud Scheduler HTTP, or a Pub/Sub CloudEvent whose body we do not need)."""
    from farmsync.prints import service

    await call.body()  # a CloudEvent or an empty POST: the content carries no options we rely on
    return (await service.run_tick(get_services())).as_dict()


async def backfill(call: Call) -> Any:
    from farmsync.prints import service
    from farmsync.web.app import BUDGET, MAX_ARCHIVES  # the bounds the API description states

    max_archives = MAX_ARCHIVES.read_integer(call)
    budget = BUDGET.read_integer(call)
    retry = call.choice("retry", ("now",))
    report = await service.backfill(
        get_services(),
        max_archives=max_archives,
        budget=float(budget) if budget else None,
        retry_now=retry == "now",
    )
    return report.as_dict()


async def sync_archive(call: Call) -> Any:
    from farmsync.prints import service

    force = bool(call.flag("force", False))
    archive_id = int(call.path_params["archive_id"])
    return (await service.sync_archive(get_services(), archive_id, force=force)).as_dict()


async def status(call: Call) -> Any:
    """Counts per state, the cursor, the last tick and backfill, pending, parked and recent failures."""
    from farmsync.prints import service

    return await service.print_status(get_services())
