"""Exactly once under real concurrency: 8 OS processes fire webhooks, ticks and manual syncs at the same farm."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from farmsync_sim.scenarios import make_scenario
from tests.fixtures.farm import farm_settings
from tests.fixtures.store import open_spec

pytestmark = pytest.mark.usefixtures("store_backend")
PROCESSES = 8


class _FarmAddress:
    """What a child process needs to reach the farm (SimFarm itself stays in the parent)."""

    def __init__(self, farm: Any) -> None:
        self.bambuddy_url = farm.bambuddy_url
        self.inventree_url = farm.inventree_url
        self.api_key = farm.api_key
        self.token = farm.token
        self.ids = farm.ids


def _worker(
    address: _FarmAddress, spec: dict[str, Any], data_dir: str, seed: int, start_at: float
) -> list[str]:
    from farmsync.prints import tick as ticks
    from farmsync.prints.service import print_sync, run_tick
    from farmsync.services import Services, set_services
    from farmsync.web.app import app_router

    async def main() -> list[str]:
        services = Services(farm_settings(address, Path(data_dir), sync_concurrency=3), store=open_spec(spec))
        set_services(services)

        async def endpoint(request: Request):
            return await app_router.dispatch(request)

        app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w", timeout=120)
        rng = random.Random(seed)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        done: list[str] = []
        for _ in range(4):
            action = rng.choice(["webhook", "tick", "archive", "backfill"])
            if action == "webhook":
                response = await client.post(
                    "/webhooks/bambuddy",
                    json={"event": "print_complete"},
                    headers={"Authorization": "Bearer hook-secret-for-tests"},
                )
                assert response.status_code == 200, response.text
            elif action == "tick":
                await run_tick(services)
            elif action == "archive":
                for archive_id in rng.sample(range(1, 60), 5):
                    try:
                        await ticks.sync_archive(print_sync(services), archive_id)
                    except Exception as exc:  # a deleted/unknown archive is a 502 for callers; fine here
                        if "404" not in str(exc):
                            raise
            else:
                await ticks.backfill(print_sync(services))
            done.append(action)
        await client.aclose()
        await services.aclose()
        return done

    return asyncio.run(main())


def test_eight_processes_make_each_stock_item_once(sim_farm_factory, make_store, tmp_path: Path) -> None:
    farm = sim_farm_factory(scenario=make_scenario(runs=130, repeat_ratio=0.4, seed=11, name="race"), seed=11)
    _, spec = make_store()
    completed = [
        r
        for r in farm.bambuddy.state.print_log.values()
        if r["status"] == "completed" and r["archive_id"] is not None
    ]
    assert len(completed) >= 90
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 5.0
    with ctx.Pool(PROCESSES) as pool:
        actions = pool.starmap(
            _worker, [(_FarmAddress(farm), spec, str(tmp_path), seed, start_at) for seed in range(PROCESSES)]
        )
    assert sum(len(a) for a in actions) == PROCESSES * 4
    # whatever mix ran, one more worker finishes the rest; then every completed run has exactly one item
    assert _worker(_FarmAddress(farm), spec, str(tmp_path), 99, 0.0)
    batches = Counter(
        i["batch"]
        for i in farm.inventree.state.stock_items.values()
        if str(i["batch"]).startswith("bambuddy-")
    )
    expected = {f"bambuddy-{r['archive_id']}-{r['id']}" for r in completed}
    assert set(batches) == expected
    duplicates = {b: n for b, n in batches.items() if n > 1}
    assert duplicates == {}
    ipns = Counter(
        p["IPN"] for p in farm.inventree.state.parts.values() if str(p.get("IPN", "")).startswith("BMB-")
    )
    assert all(n == 1 for n in ipns.values()), "a part was created twice"
