"""The G-code mirror over HTTP: the scheduled tick, ``POST /sync/gcode`` and ``GET /gcode/status``.

Each reads its request and calls :mod:`farmsync.gcode.service`, where the run lives (the same run the command
line makes), importing it on first call so the other targets don't pay for the back ends.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from farmsync.services import get_services
from farmsync.web.call import Call
from farmsync.web.inputs import DryRun, Flag, takes_query


class GcodeSyncQuery(DryRun):
    """``POST /sync/gcode``'s query; an absent flag takes its default from GCODE_DRY_RUN / GCODE_PULL."""

    model_config = ConfigDict(defer_build=True)  # built on first use: the gcode_tick target never does

    pull: Flag | None = Field(
        None, description="Copy printer-only files into the master instead of deleting them."
    )


async def tick(call: Call) -> Any:
    """The ``gcode_tick`` target (Cloud Scheduler HTTP or a Pub/Sub CloudEvent: the body carries nothing used)."""
    from farmsync.gcode.service import run_scheduled

    await call.body()
    return await run_scheduled(get_services())


async def status(call: Call) -> Any:
    """``GET /gcode/status``: the mirror's state per printer."""
    from farmsync.gcode.service import gcode_status

    return await gcode_status(get_services())


@takes_query(GcodeSyncQuery)
async def sync(call: Call, query: GcodeSyncQuery) -> Any:
    """``POST /sync/gcode?dry_run=…&pull=…``."""
    from farmsync.gcode.service import run_gcode

    services = get_services()
    settings = services.settings
    dry_run = settings.gcode_dry_run if query.dry_run is None else query.dry_run
    pull = settings.gcode_pull if query.pull is None else query.pull
    return await run_gcode(services, dry_run=dry_run, pull=pull, trigger="api")
