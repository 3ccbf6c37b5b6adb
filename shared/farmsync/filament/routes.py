"""HTTP handlers for filament: status, a full run, one step, and the scheduled tick (behind the service token).

Every handler answers 409 while FILAMENT_TRACKING_ENABLED is false, and takes ``?dry_run=true|false``
(default FILAMENT_DRY_RUN). ``sync_all`` and ``tick`` honour FILAMENT_SYNC_USAGE/LOCATIONS/SPOOLS; the one-step
routes run their step whatever its toggle says, because someone asked for exactly that step.
"""

from __future__ import annotations

from typing import Any

from farmsync.filament.page import refresh_snapshot
from farmsync.filament.run import ensure_enabled, run_with_view
from farmsync.filament.status import filament_status
from farmsync.services import Services, get_services
from farmsync.web.call import Call


def _services() -> Services:
    services = get_services()
    ensure_enabled(services.settings)
    return services


async def _run(call: Call, steps: list[str] | None, trigger: str) -> Any:
    dry_run = call.flag("dry_run", None)
    services = _services()
    report, view = await run_with_view(services, steps=steps, dry_run=dry_run, trigger=trigger)
    await refresh_snapshot(services, report, view)
    return report.as_dict()


async def status(call: Call) -> Any:
    """``GET /filament/status``."""
    return (await filament_status(_services())).as_dict()


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


async def run_scheduled(services: Services) -> Any:
    """One scheduled filament run (``farmsync serve``'s scheduler, ``farmsync tick filament``)."""
    ensure_enabled(services.settings)
    report, view = await run_with_view(services, trigger="tick")
    await refresh_snapshot(services, report, view)
    return report
