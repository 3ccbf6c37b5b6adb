"""Function targets: thin entry points into the farmsync library (functions-framework, ASGI).

Run any of them locally with ``functions-framework --target=<name> --source=functions/main.py``:

- ``app``            every route in one service, as ``farmsync serve`` runs it on port 8088
- ``api``            the manual routes (status, validate, sync/*, filament/*, gcode/*)
- ``webhook``        Bambuddy's notification (any path): triggers an incremental print tick
- ``backfill_tick``  one incremental print tick (Cloud Scheduler, HTTP or a Pub/Sub CloudEvent)
- ``filament_tick``  one filament run: usage, locations, spools
- ``gcode_tick``     one G-code mirror run (or pull, by setting)
"""

from functions_framework import aio

from farmsync.web.handlers import filament, gcode, prints
from farmsync.web.targets import single

_webhook = single("POST", prints.webhook, "webhook")
_backfill_tick = single("POST", prints.tick, "service")
_filament_tick = single("POST", filament.tick, "service")
_gcode_tick = single("POST", gcode.tick, "service")


@aio.http
async def app(request):
    from farmsync.web.app import app_router  # the whole route table, loaded only by the targets serving it

    return await app_router.dispatch(request)


@aio.http
async def api(request):
    from farmsync.web.app import api_router

    return await api_router.dispatch(request)


@aio.http
async def webhook(request):
    return await _webhook.dispatch(request)


@aio.http
async def backfill_tick(request):
    return await _backfill_tick.dispatch(request)


@aio.http
async def filament_tick(request):
    return await _filament_tick.dispatch(request)


@aio.http
async def gcode_tick(request):
    return await _gcode_tick.dispatch(request)
