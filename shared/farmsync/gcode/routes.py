"""HTTP handlers of the G-code mirror: the scheduled tick, ``POST /sync/gcode`` and ``GET /gcode/status``.

Each only reads its request and calls :mod:`farmsync.gcode.service`, where the run itself lives.
"""

from __future__ import annotations

from typing import Any

from farmsync.gcode.service import gcode_status, run_gcode, run_scheduled
from farmsync.services import get_services
from farmsync.web.call import Call


async def tick(call: Call) -> Any:
    """Scheduled run (Cloud Scheduler HTTP or a Pub/Sub CloudEvent): the body carries nothing we use."""
    await call.body()
    return await run_scheduled(get_services())


async def status(call: Call) -> Any:
    """GET /gcode/status."""
    return await gcode_status(get_services())


async def sync(call: Call) -> Any:
    """POST /sync/gcode?dry_run=true|false&pull=true|false; defaults from GCODE_DRY_RUN and GCODE_PULL."""
    services = get_services()
    settings = services.settings
    dry_run = call.flag("dry_run", settings.gcode_dry_run)
    pull = call.flag("pull", settings.gcode_pull)
    return await run_gcode(services, dry_run=dry_run, pull=pull, trigger="api")
