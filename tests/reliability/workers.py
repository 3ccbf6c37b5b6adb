"""Entry points of the worker processes the crash and concurrency suites spawn (importable by ``spawn``)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any, Protocol

from tests.reliability.world import FarmAddress


def crash_worker(
    address: FarmAddress,
    spec: dict[str, Any],
    data_dir: str,
    printers_file: str,
    master: str,
    ready: Any,
    log_path: str,
) -> None:
    """Run rounds forever (the parent kills this process with SIGKILL at a random moment).

    Anything but a FarmsyncError escapes :func:`run_round` and ends the process with exit code 1, which the
    parent sees: a killed worker must die by the signal, never by a bug.
    """
    from tests.fixtures.log_scan import capture_to_file

    capture_to_file(log_path)
    asyncio.run(_crash_loop(address, spec, Path(data_dir), Path(printers_file), Path(master), ready))


async def _crash_loop(
    address: FarmAddress, spec: dict[str, Any], data_dir: Path, printers_file: Path, master: Path, ready: Any
) -> None:
    from farmsync.services import Services
    from tests.fixtures.store import open_spec
    from tests.reliability.world import run_round, settings_for

    settings = settings_for(
        address,
        data_dir,
        printers_file=printers_file,
        master=master,
        lease_seconds=2.0,
        http_timeout_seconds=10.0,
    )
    services = Services(settings, store=open_spec(spec))
    ready.put(os.getpid())
    while True:
        await run_round(services)


SERVICE = {"X-Service-Token": "svc-token-for-tests"}
BEARER = {"Authorization": "Bearer hook-secret-for-tests"}
INVOCATIONS = (
    "webhook",
    "backfill_tick",
    "sync_backfill",
    "sync_archive",
    "sync_usage",
    "sync_filament",
    "filament_tick",
    "api_tick",
)


def concurrent_worker(
    address: FarmAddress,
    spec: dict[str, Any],
    data_dir: str,
    kinds: list[str],
    seed: int,
    start_at: float,
    log_path: str,
) -> list[dict[str, Any]]:
    """Fire ``kinds`` at once (one asyncio task each) through the function targets, starting at ``start_at``.

    Returns each invocation's kind, HTTP status and JSON body, for the parent to add up.
    """
    from tests.fixtures.log_scan import capture_to_file

    capture_to_file(log_path)
    return asyncio.run(_concurrent(address, spec, Path(data_dir), kinds, seed, start_at))


async def _concurrent(
    address: FarmAddress, spec: dict[str, Any], data_dir: Path, kinds: list[str], seed: int, start_at: float
) -> list[dict[str, Any]]:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from farmsync.services import Services, set_services
    from farmsync.web.app import app_router
    from farmsync.web.handlers import filament, prints
    from farmsync.web.targets import single
    from tests.fixtures.store import open_spec
    from tests.reliability.world import settings_for

    services = Services(settings_for(address, data_dir, sync_concurrency=3), store=open_spec(spec))
    set_services(services)
    targets = {
        "app": app_router,
        "backfill_tick": single("POST", prints.tick, "service"),
        "filament_tick": single("POST", filament.tick, "service"),
    }

    def asgi(router: Any) -> httpx.AsyncClient:
        async def endpoint(request: Request) -> Response:
            return await router.dispatch(request)

        app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
        transport = httpx.ASGITransport(app=app)
        return httpx.AsyncClient(transport=transport, base_url="http://farmsync.test", timeout=120)

    clients = {name: asgi(router) for name, router in targets.items()}
    rng = random.Random(seed)
    archive_ids = sorted(rng.sample(range(1, 25), 4))

    async def invoke(kind: str) -> dict[str, Any]:
        app = clients["app"]
        if kind == "webhook":
            response = await app.post("/webhooks/bambuddy", json={"event": "print_complete"}, headers=BEARER)
        elif kind == "backfill_tick":
            response = await clients["backfill_tick"].post("/", content=b"", headers=SERVICE)
        elif kind == "filament_tick":
            response = await clients["filament_tick"].post("/", json={"specversion": "1.0"}, headers=SERVICE)
        elif kind == "sync_backfill":
            response = await app.post("/sync/backfill", headers=SERVICE)
        elif kind == "sync_archive":
            bodies = []
            for archive_id in archive_ids:
                one = await app.post(f"/sync/archive/{archive_id}", headers=SERVICE)
                bodies.append({"status": one.status_code, "body": one.json()})
            return {"kind": kind, "status": 200, "body": {"archives": bodies}}
        elif kind == "sync_usage":
            response = await app.post("/sync/filament/usage?dry_run=false", headers=SERVICE)
        elif kind == "sync_filament":
            response = await app.post("/sync/filament?dry_run=false", headers=SERVICE)
        elif kind == "api_tick":
            response = await app.post("/sync/backfill?max_archives=3", headers=SERVICE)
        else:
            raise ValueError(kind)
        return {"kind": kind, "status": response.status_code, "body": response.json()}

    await asyncio.sleep(max(0.0, start_at - time.time()))
    results = await asyncio.gather(*(invoke(kind) for kind in kinds))
    for client in clients.values():
        await client.aclose()
    await services.aclose()
    return list(results)


class Startable(Protocol):
    pid: int | None
    exitcode: int | None

    def start(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...


def kill_wave(
    workers: list[Startable], ready: Any, rng: random.Random, delays: tuple[float, float], wave: int
) -> None:
    """Start the workers, wait until each says it is ready, SIGKILL each after a random delay, and check that
    every one died by the signal (not by an exception of its own, exit code 1, nor by finishing)."""
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)
    started = time.monotonic()
    for worker, delay in sorted(
        zip(workers, (rng.uniform(*delays) for _ in workers), strict=True), key=lambda p: p[1]
    ):
        time.sleep(max(0.0, started + delay - time.monotonic()))
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == -signal.SIGKILL, f"wave {wave}: worker exit code {worker.exitcode}"
