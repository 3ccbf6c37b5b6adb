"""Filament over HTTP: status, a full run, one step, and the scheduled tick (behind the service token).

Every handler answers 409 while FILAMENT_TRACKING_ENABLED is false, and takes ``?dry_run=true|false``
(default FILAMENT_DRY_RUN).
"""

from __future__ import annotations

from typing import Any

from farmsync.services import get_services
from farmsync.web.call import Call


async def _run(call: Call, steps: list[str] | None, trigger: str) -> Any:
    from farmsync.filament import service

    dry_run = call.flag("dry_run", None)
    report = await service.sync(get_services(), steps=steps, dry_run=dry_run, trigger=trigger)
    return report.as_dict()


async def status(call: Call) -> Any:
    """``GET /filament/status``."""
    from farmsync.filament import service

    return (await service.status(get_services())).as_dict()


async def sync_all(call: Call) -> Any:
    """``POST /sync/filament``: usage, then locations, then spools (the enabled ones)."""
    return await _run(call, None, "sync")


async def sync_spools(call: Call) -> Any:
    return await _run(call, ["spools"], "sync-spools")


async def sync_locations(call: Call) -> Any:
    return await _run(call, ["locations"], "sync-locations")


async def sync_usage(call: Call) -> Any:
    return await _run(call, ["usage"], "sync-usage")


async def tick(call: Call) -> Any:
    """The ``filament_tick`` target (Cloud Scheduler HTTP or a Pub/Sub CloudEvent: the body is not needed)."""
    await call.body()
    return await _run(call, None, "tick")
