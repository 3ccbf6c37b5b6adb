"""Function targets: thin entry points into the farmsync library (functions-framework, ASGI).

Run any of them locally with ``functions-framework --target=<name> --source=functions/main.py``:

- ``app``            every route in one service, as ``farmsync serve`` runs it on port 8088
- ``api``            the manual routes (status, validate, sync/*, filament/*, gcode/*)
- ``webhook``        Bambuddy's notification (any path): triggers an incremental print tick
- ``backfill_tick``  one incremental print tick (Cloud Scheduler, HTTP or a Pub/Sub CloudEvent)
- ``filament_tick``  one filament run: usage, locations, spools
- ``gcode_tick``     one G-code mirror run (or pull, by setting)
"""

from functools import cache

from farmsync.startup import skip_httpx_cli

skip_httpx_cli()  # before anything imports httpx: its command-line client would load rich and pygments

from functions_framework import aio  # noqa: E402 - after the line above, like the import below

from farmsync.web.targets import single  # noqa: E402

# One router per target, built on its first request. Each target imports its own feature's handlers inside its
# function, so loading this file (which functions-framework does for whichever target it serves) imports no
# feature's handlers: the webhook does not pay for filament's or G-code's (cold start, #17).
router_for = cache(single)


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
    from farmsync.web.handlers import prints

    return await router_for("POST", prints.webhook, "webhook").dispatch(request)


@aio.http
async def backfill_tick(request):
    from farmsync.web.handlers import prints

    return await router_for("POST", prints.tick, "service").dispatch(request)


@aio.http
async def filament_tick(request):
    from farmsync.web.handlers import filament

    return await router_for("POST", filament.tick, "service").dispatch(request)


@aio.http
async def gcode_tick(request):
    from farmsync.web.handlers import gcode

    return await router_for("POST", gcode.tick, "service").dispatch(request)
