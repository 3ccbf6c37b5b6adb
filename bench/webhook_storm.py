"""Webhook storm: N webhooks at C concurrent, coalesced ticks vs one tick per webhook (#17, target 6).

Side by side in one run, each against a fresh simulated farm with the same latency per request, farmsync's
webhook route in-process (the router every target uses, over ASGI: no sockets, so the figures are farmsync's own):
- **coalesced** (what farmsync does): concurrent webhooks share the tick in flight's successor;
- **one tick per webhook** (the previous behaviour, the baseline): each webhook runs its own tick.
Both answer a webhook only after a tick that started after it arrived has finished. Reported: Bambuddy requests,
ticks run, answer time p50/p99 and wall time. Target: at most two ticks' worth of Bambuddy reads per burst.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from bench.common import Result, Target, ratio, run_main
from farmsync.prints import service as print_service
from farmsync.prints import tick as ticks
from farmsync.services import Services, set_services
from farmsync.settings import load_settings
from farmsync.web.app import app_router
from farmsync_sim.server import SimFarm

NAME = "webhook_storm"
SECRET = "bench-hook-secret"  # a loopback simulator's secret


@dataclass(frozen=True)
class Size:
    webhooks: int
    concurrency: int
    latency_ms: float
    seed: int = 5


SIZES = {
    "full": Size(webhooks=2000, concurrency=50, latency_ms=50.0),
    "quick": Size(webhooks=300, concurrency=50, latency_ms=20.0),
    "tiny": Size(webhooks=20, concurrency=10, latency_ms=0.0),
}


def services_for(farm: SimFarm, data_dir: Path) -> Services:
    ids = farm.ids
    settings = load_settings(
        "/dev/null",
        bambuddy_base_url=farm.bambuddy_url,
        bambuddy_api_key=farm.api_key,
        inventree_base_url=farm.inventree_url,
        inventree_token=farm.token,
        inventree_part_category_id=ids["INVENTREE_PART_CATEGORY_ID"],
        inventree_stock_location_id=ids["INVENTREE_STOCK_LOCATION_ID"],
        webhook_shared_secret=SECRET,
        data_dir=data_dir,
        log_level="WARNING",
    )
    return Services(settings)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def storm(size: Size, *, coalesced: bool) -> dict[str, Any]:
    with (
        SimFarm("small", seed=size.seed, latency_ms=size.latency_ms) as farm,
        tempfile.TemporaryDirectory() as tmp,
    ):
        services = services_for(farm, Path(tmp))
        set_services(services)
        ticks_run = 0
        original: Callable[..., Awaitable[ticks.RunReport]] = print_service.run_tick

        async def one_tick_each(svc: Services, **kwargs: Any) -> ticks.RunReport:
            nonlocal ticks_run
            ticks_run += 1
            return await ticks.tick(print_service.print_sync(svc), **kwargs)

        if not coalesced:
            print_service.run_tick = one_tick_each  # type: ignore[assignment]

        async def endpoint(request: Request):
            return await app_router.dispatch(request)

        app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])
        headers = {"Authorization": f"Bearer {SECRET}"}
        body = {"event": "print_complete", "printer": "B1-X1-CARBON", "filename": "Benchy"}
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://farmsync.test", timeout=600
            ) as client:
                warm = await client.post(
                    "/webhooks/bambuddy", json=body, headers=headers
                )  # first sync, not timed
                warm.raise_for_status()
                farm.bambuddy.log.clear()
                before = services.state["print-tick"].runs if coalesced else ticks_run
                gate = asyncio.Semaphore(size.concurrency)
                answers: list[float] = []
                statuses: list[int] = []

                async def one() -> None:
                    async with gate:
                        started = time.perf_counter()
                        response = await client.post("/webhooks/bambuddy", json=body, headers=headers)
                        answers.append(time.perf_counter() - started)
                        statuses.append(response.status_code)

                started = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(size.webhooks)))
                wall = time.perf_counter() - started
                ran = (services.state["print-tick"].runs if coalesced else ticks_run) - before
        finally:
            print_service.run_tick = original  # type: ignore[assignment]
            set_services(None)
            await services.aclose()
            services.sync_store.close()
        return {
            "webhooks": size.webhooks,
            "ok": statuses.count(200),
            "ticks": ran,
            "bambuddy_requests": len(farm.bambuddy.log),
            "p50_ms": round(statistics.median(answers) * 1000, 1),
            "p99_ms": round(percentile(answers, 0.99) * 1000, 1),
            "seconds": round(wall, 2),
        }


def run(size: Size, *, quick: bool) -> Result:
    result = Result(
        name=NAME,
        title="Webhook storm: coalesced ticks vs one tick per webhook",
        quick=quick,
        params={
            "webhooks": size.webhooks,
            "concurrency": size.concurrency,
            "latency_ms": size.latency_ms,
            "scenario": "small",
            "store": "sqlite",
        },
    )
    ours = asyncio.run(storm(size, coalesced=True))
    base = asyncio.run(storm(size, coalesced=False))
    result.columns = [
        ("run", "run"),
        ("ok", "answered 200"),
        ("ticks", "ticks"),
        ("bambuddy_requests", "Bambuddy req"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("seconds", "wall s"),
    ]
    result.rows = [
        {"run": "farmsync (coalesced ticks)", **ours},
        {"run": "one tick per webhook (before)", **base},
    ]
    # One idle tick reads the print log once; the bound allows the tick in flight per concurrency wave plus the
    # one queued behind it: with C callers at a time that is at most 2 ticks while they overlap.
    per_tick = base["bambuddy_requests"] / max(1, base["ticks"])
    waves = -(-size.webhooks // size.concurrency)
    result.targets = [
        Target(
            "every webhook answered",
            f"{size.webhooks} × 200",
            ours["ok"],
            ours["ok"] == size.webhooks and base["ok"] == size.webhooks,
        ),
        Target(
            "Bambuddy reads per concurrent burst",
            "≤ 2 ticks' worth while webhooks overlap",
            f"{ours['ticks']} ticks, {ours['bambuddy_requests']} requests",
            ours["ticks"] <= 2 * waves and ours["bambuddy_requests"] <= 2 * waves * max(per_tick, 1),
            f"{size.webhooks} webhooks at {size.concurrency} concurrent; before: {base['ticks']} ticks, "
            f"{base['bambuddy_requests']} requests ({ratio(base['bambuddy_requests'], ours['bambuddy_requests'])}× more)",
        ),
    ]
    result.notes = [
        "answer time includes waiting for a tick that started after the webhook arrived (the promise a function "
        "target needs); the baseline answers each webhook with its own tick",
    ]
    result.details = {"coalesced": ours, "baseline": base}
    return result


def main(argv: list[str] | None = None) -> int:
    return run_main(__doc__, run, SIZES, argv)


if __name__ == "__main__":
    sys.exit(main())
