"""Filament over HTTP: status, a full run, one step, and the scheduled tick (behind the service token).

Every handler answers 409 while FILAMENT_TRACKING_ENABLED is false, and takes ``?dry_run=true|false``
(default FILAMENT_DRY_RUN).
"""

from __future__ import annotations

from typing import Any

from farmsync.services import get_services
from farmsync.web.call import Call
from farmsync.web.inputs import DryRun, takes_query


async def _run(query: DryRun, steps: list[str] | None, trigger: str) -> Any:
    from farmsync.filament import service

    report = await service.sync(get_services(), steps=steps, dry_run=query.dry_run, trigger=trigger)
    return report.as_dict()


async def status(call: Call) -> Any:
    """``GET /filament/status``."""
    from farmsync.filament import service

    return (await service.status(get_services())).as_dict()


@takes_query(DryRun)
async def sync_all(call: Call, query: DryRun) -> Any:
    """``POST /sync/filament``: usage, then locations, then spools (the enabled ones)."""
    return await _run(query, None, "sync")


@takes_query(DryRun)
async def sync_spools(call: Call, query: DryRun) -> Any:
    return await _run(query, ["spools"], "sync-spools")


@takes_query(DryRun)
async def sync_locations(call: Call, query: DryRun) -> Any:
    return await _run(query, ["locations"], "sync-locations")


@takes_query(DryRun)
async def sync_usage(call: Call, query: DryRun) -> Any:
    return await _run(query, ["usage"], "sync-usage")


@takes_query(DryRun)
async def tick(call: Call, query: DryRun) -> Any:
    """The ``filament_tick`` target (Cloud Scheduler HTTP or a Pub/Sub CloudEvent: the body is not needed)."""
    await call.body()
    return await _run(query, None, "tick")
