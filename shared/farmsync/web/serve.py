"""``farmsync serve``: every route in one process on port 8088, plus the scheduler, like the predecessor."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from farmsync.logs import action, get_logger
from farmsync.scheduler import Job, Scheduler
from farmsync.services import Services, set_services
from farmsync.web.app import app_router

log = get_logger("serve")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def scheduled_jobs(services: Services) -> list[Job]:
    """The ticks this box should run: each one only when its feature is configured."""
    settings = services.settings
    jobs: list[Job] = []
    if not settings.missing_for("prints"):
        from farmsync.prints.routes import run_tick

        jobs.append(Job("prints", lambda: run_tick(services)))
    if settings.filament_tracking_enabled and not settings.missing_for("filament"):
        from farmsync.filament.routes import run_scheduled

        jobs.append(Job("filament", lambda: run_scheduled(services)))
    if settings.gcode_source_dir is not None:
        from farmsync.gcode.routes import run_scheduled as run_gcode

        jobs.append(Job("gcode", lambda: run_gcode(services)))
    return jobs


def create_app(services: Services, *, schedule: bool = True) -> Starlette:
    """The ASGI app of ``farmsync serve`` (and of the demo): the shared router, the scheduler in the lifespan."""

    async def endpoint(request: Request) -> Response:
        return await app_router.dispatch(request)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        set_services(services)
        scheduler = Scheduler(
            scheduled_jobs(services) if schedule else [],
            services.settings.poll_interval_seconds,
            on_startup=services.settings.sync_on_startup,
            grace=services.settings.tick_time_budget_seconds + 10,
        )
        scheduler.start()
        try:
            yield {}
        finally:
            await scheduler.stop()
            await services.aclose()
            action(log, "farmsync stopped cleanly", jobs=",".join(scheduler.last))

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=METHODS)], lifespan=lifespan)


def serve(services: Services, host: str, port: int, *, schedule: bool = True) -> None:
    """Run until SIGINT/SIGTERM; uvicorn drives the graceful shutdown through the lifespan."""
    import uvicorn

    config = uvicorn.Config(
        create_app(services, schedule=schedule),
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=int(services.settings.tick_time_budget_seconds),
    )
    uvicorn.Server(config).run()
