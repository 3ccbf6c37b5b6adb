"""Filament as plain use cases: status, a run of some or all steps, and the scheduled run.

The CLI, ``farmsync serve``'s scheduler and the HTTP handlers call these. Each refuses with 409 while
FILAMENT_TRACKING_ENABLED is false. A run without ``steps`` honours FILAMENT_SYNC_USAGE/LOCATIONS/SPOOLS;
naming steps runs them whatever their toggle says, because someone asked for exactly that step.
"""

from __future__ import annotations

from collections.abc import Iterable

from farmsync.filament.page import refresh_snapshot
from farmsync.filament.report import FilamentReport, FilamentStatus
from farmsync.filament.run import ensure_enabled, run_filament, run_with_view
from farmsync.filament.status import filament_status
from farmsync.services import Services


async def status(services: Services) -> FilamentStatus:
    """Spool matching, pending usage and what is loaded where."""
    ensure_enabled(services.settings)
    return await filament_status(services)


async def sync(
    services: Services,
    *,
    steps: Iterable[str] | None = None,
    dry_run: bool | None = None,
    trigger: str = "manual",
    snapshot: bool = True,
) -> FilamentReport:
    """One run (``dry_run`` None means FILAMENT_DRY_RUN); ``snapshot`` refreshes what the operator page shows."""
    ensure_enabled(services.settings)
    chosen = list(steps) if steps is not None else None
    if not snapshot:
        return await run_filament(services, steps=chosen, dry_run=dry_run, trigger=trigger)
    report, view = await run_with_view(services, steps=chosen, dry_run=dry_run, trigger=trigger)
    await refresh_snapshot(services, report, view)  # from the run's own view: no second read
    return report


async def run_scheduled(services: Services) -> FilamentReport:
    """One scheduled run (``farmsync serve``'s scheduler, ``farmsync tick filament``, the filament_tick target)."""
    return await sync(services, trigger="tick")
