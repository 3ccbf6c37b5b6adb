"""Print sync over HTTP: Bambuddy's webhook, the scheduled tick, backfill, one archive, and status."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from farmsync.services import get_services
from farmsync.web.call import Call
from farmsync.web.inputs import ASCII_DIGITS, Flag, Query, read_body, takes_query

WEBHOOK_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Bambuddy attaches the finish photo as base64 ``image`` (bodies up to about 3.4 MB) and never retries a 413.
The body is only a trigger: nothing in it, the image least of all, is stored or logged."""


class WebhookQuery(Query):
    secret: str | None = Field(
        None, description="The webhook secret, for callers that cannot send it as a header."
    )


class Notification(BaseModel):
    """Bambuddy's notification body: only ``event`` is read; everything else (the photo too) is ignored."""

    model_config = ConfigDict(frozen=True, extra="allow")
    event: StrictStr | None = Field(None, examples=["print_complete"])


class ArchiveQuery(Query):
    model_config = ConfigDict(defer_build=True)  # built on first use: the webhook and tick targets never do

    force: Flag = Field(False, description="Refresh parameters, image and link of an already synced print.")


class BackfillQuery(Query):
    model_config = ConfigDict(defer_build=True)  # built on first use: the webhook and tick targets never do

    max_archives: Annotated[int, Field(ge=1, le=1_000_000), ASCII_DIGITS] | None = Field(
        None, description="Stop after this many prints were synced."
    )
    budget_seconds: Annotated[int, Field(ge=1, le=86_400), ASCII_DIGITS] | None = Field(
        None, description="Stop starting new prints after this many seconds."
    )
    retry: Literal["now"] | None = Field(
        None, description="now: retry prints waiting after a failure without waiting."
    )


@takes_query(WebhookQuery)
async def webhook(call: Call, query: WebhookQuery) -> Any:
    """Bambuddy's notification carries no ids: it only triggers an incremental tick (answered within 20 s)."""
    from farmsync.prints import service

    payload = await call.json(required=True, limit=WEBHOOK_MAX_BODY_BYTES)
    notification = read_body(payload, Notification, "webhook body")
    return await service.on_notification(get_services(), notification.event)


async def tick(call: Call) -> Any:
    """One incremental tick (Cloud Scheduler HTTP, or a Pub/Sub CloudEvent whose body we do not need)."""
    from farmsync.prints import service

    await call.body()  # a CloudEvent or an empty POST: the content carries no options we rely on
    return (await service.run_tick(get_services())).as_dict()


@takes_query(BackfillQuery)
async def backfill(call: Call, query: BackfillQuery) -> Any:
    from farmsync.prints import service

    report = await service.backfill(
        get_services(),
        max_archives=query.max_archives,
        budget=float(query.budget_seconds) if query.budget_seconds else None,
        retry_now=query.retry == "now",
    )
    return report.as_dict()


@takes_query(ArchiveQuery)
async def sync_archive(call: Call, query: ArchiveQuery) -> Any:
    from farmsync.prints import service

    archive_id = int(call.path_params["archive_id"])
    return (await service.sync_archive(get_services(), archive_id, force=query.force)).as_dict()


async def status(call: Call) -> Any:
    """Counts per state, the cursor, the last tick and backfill, pending, parked and recent failures."""
    from farmsync.prints import service

    return await service.print_status(get_services())
