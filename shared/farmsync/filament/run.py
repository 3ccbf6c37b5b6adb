"""A filament run: some or all steps, always in the order usage → locations → spools.

Usage first, so moves and new spools see the quantities after this run's prints; locations before spools, so a
spool created now starts from where InvenTree has it. Each step is independent: one that fails is reported and
the others still run. These are the functions the CLI and the routes call.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from farmsync import metrics
from farmsync.clients.http import COUNTERS
from farmsync.errors import FarmsyncError, InputError
from farmsync.filament.context import FilamentSync, Hook
from farmsync.filament.locations import sync_locations
from farmsync.filament.names import collect_names
from farmsync.filament.report import FilamentReport
from farmsync.filament.spools import sync_spools
from farmsync.filament.usage import sync_usage
from farmsync.logs import action, get_logger
from farmsync.services import Services
from farmsync.settings import Settings

log = get_logger("filament")

STEPS: tuple[str, ...] = ("usage", "locations", "spools")
META_NS = "meta"
LAST_RUN_KEY = "last-filament"


def ensure_enabled(settings: Settings) -> None:
    """FILAMENT_TRACKING_ENABLED=false: every filament route and the tick answer 409."""
    if not settings.filament_tracking_enabled:
        raise InputError(
            "filament tracking is off (FILAMENT_TRACKING_ENABLED=false)",
            field="FILAMENT_TRACKING_ENABLED",
            expected="true to sync filament",
            status_code=409,
        )


def enabled_steps(settings: Settings) -> list[str]:
    """The steps FILAMENT_SYNC_USAGE/LOCATIONS/SPOOLS leave on, in run order."""
    toggles = {
        "usage": settings.filament_sync_usage,
        "locations": settings.filament_sync_locations,
        "spools": settings.filament_sync_spools,
    }
    return [step for step in STEPS if toggles[step]]


def filament_sync(services: Services, *, dry_run: bool, hook: Hook | None = None) -> FilamentSync:
    """A FilamentSync over the process's clients and store (ConfigError when required settings are unset)."""
    services.settings.require("filament")
    return FilamentSync(
        services.settings,
        services.store,
        services.bambuddy(),
        services.inventree(),
        dry_run=dry_run,
        hook=hook,
    )


PLAN_TRIGGER = "page-plan"
"""The trigger of the dry run that refreshes the page's filament plan after every run."""


async def run_filament(
    services: Services,
    *,
    steps: Iterable[str] | None = None,
    dry_run: bool | None = None,
    hook: Hook | None = None,
    trigger: str = "manual",
) -> FilamentReport:
    """Run ``steps`` (default: those the FILAMENT_SYNC_* toggles enable) in order; ``dry_run`` None means
    FILAMENT_DRY_RUN. A dry run reads both systems and writes nothing anywhere, the store included."""
    report, _ = await run_with_view(services, steps=steps, dry_run=dry_run, hook=hook, trigger=trigger)
    return report


async def run_with_view(
    services: Services,
    *,
    steps: Iterable[str] | None = None,
    dry_run: bool | None = None,
    hook: Hook | None = None,
    trigger: str = "manual",
) -> tuple[FilamentReport, FilamentSync]:
    """:func:`run_filament`, and the run's view of both systems as it left them, so the page's snapshot is
    built from what the run read instead of reading everything again."""
    settings = services.settings
    wanted = list(enabled_steps(settings) if steps is None else steps)
    unknown = sorted(set(wanted) - set(STEPS))
    if unknown:
        raise InputError(
            f"unknown filament step(s): {', '.join(unknown)}",
            field="step",
            expected=" | ".join(STEPS),
            status_code=422,
        )
    dry = settings.filament_dry_run if dry_run is None else dry_run
    started = time.monotonic()
    before = (COUNTERS.total("bambuddy"), COUNTERS.total("inventree"))
    ctx = filament_sync(services, dry_run=dry, hook=hook)
    await ctx.load()
    items_at_start = dict(ctx.items)
    report = FilamentReport(dry_run=dry, trigger=trigger, steps=[s for s in STEPS if s in wanted])
    report.conflicts = list(ctx.index.conflicts)
    runners: dict[str, Any] = {"usage": sync_usage, "locations": sync_locations, "spools": sync_spools}
    for step in report.steps:
        try:
            setattr(report, step, await runners[step](ctx))
        except FarmsyncError as exc:
            report.errors.append(f"{step}: {exc}")
            action(log, "filament step failed", 40, step=step, error=str(exc))
    report.writes = list(ctx.executor.writes)
    report.names = collect_names(ctx, items_at_start)
    report.seconds = round(time.monotonic() - started, 3)
    report.bambuddy_requests = COUNTERS.total("bambuddy") - before[0]
    report.inventree_requests = COUNTERS.total("inventree") - before[1]
    if trigger != PLAN_TRIGGER:  # the page's own plan refresh is bookkeeping, not a run an operator asked for
        metrics.run_duration("filament", report.seconds)
    if not dry:
        await remember(services, report)
        # a dry run writes nothing anywhere, the store's notified marks included
        if settings.notifies("conflict"):
            from farmsync import notify

            await notify.spool_conflicts(settings, services.store, report.conflicts)
    action(
        log,
        "filament run finished",
        trigger=trigger,
        dry_run=dry,
        steps=",".join(report.steps),
        writes=len(report.writes),
        conflicts=len(report.conflicts),
        seconds=report.seconds,
    )
    return report, ctx


async def remember(services: Services, report: FilamentReport) -> None:
    """Keep the last real run for /filament/status and the dashboard."""
    await services.store.put_value(
        META_NS,
        LAST_RUN_KEY,
        {
            "at": time.time(),
            "trigger": report.trigger,
            "steps": report.steps,
            "totals": report.totals(),
            "writes": len(report.writes),
            "errors": report.errors,
            "ok": report.ok,
            "seconds": report.seconds,
        },
    )
