"""``farmsync serve``: every route in one process on port 8088, plus the scheduler that runs the ticks."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from farmsync.errors import ConfigError
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
        from farmsync.prints.service import run_tick

        jobs.append(Job("prints", lambda: run_tick(services)))
    if settings.filament_tracking_enabled and not settings.missing_for("filament"):
        from farmsync.filament.service import run_scheduled

        jobs.append(Job("filament", lambda: run_scheduled(services)))
    if settings.gcode_source_dir is not None:
        from farmsync.gcode.service import run_scheduled as run_gcode

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


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says "serving": a taken port is one clear ConfigError
    naming the port and how to choose another, not uvicorn's raw error after the announcement."""
    how = "choose another with --port or PORT"
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r}: not an address to listen on ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like uvicorn: restart over TIME_WAIT
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use: {how}") from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"port {port} on {host} needs privileges: {how}") from None
        raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror}") from None
    return sock


def serve(services: Services, sock: socket.socket, *, schedule: bool = True) -> None:
    """Run on the bound ``sock`` until SIGINT/SIGTERM; uvicorn drives the graceful shutdown through the lifespan."""
    import uvicorn

    config = uvicorn.Config(
        create_app(services, schedule=schedule),
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=int(services.settings.tick_time_budget_seconds),
    )
    uvicorn.Server(config).run(sockets=[sock])
