"""A storm of webhooks costs at most two ticks' worth of Bambuddy reads, and every webhook is answered by a tick
that started after it arrived (#17: coalesced ticks)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from farmsync.web.app import app_router
from farmsync_sim.server import SimFarm

BEARER = {"Authorization": "Bearer hook-secret-for-tests"}
STORM = 60

pytestmark = pytest.mark.usefixtures("store_backend")


async def test_concurrent_webhooks_share_ticks(sim_farm: SimFarm, farm_services) -> None:
    services = farm_services()

    async def endpoint(request: Request):
        return await app_router.dispatch(request)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://farmsync.test", timeout=120) as client:
        body = {"event": "print_complete", "printer": "B1-X1-CARBON", "filename": "Benchy"}
        first = await client.post("/webhooks/bambuddy", json=body, headers=BEARER)
        assert first.status_code == 200, first.text
        sim_farm.bambuddy.log.clear()
        one = await client.post("/webhooks/bambuddy", json=body, headers=BEARER)
        assert one.status_code == 200
        one_tick = len(sim_farm.bambuddy.log)
        assert one_tick >= 1

        sim_farm.bambuddy.log.clear()
        ticks_before = services.state["print-tick"].runs
        answers = await asyncio.gather(
            *(client.post("/webhooks/bambuddy", json=body, headers=BEARER) for _ in range(STORM))
        )
    assert [a.status_code for a in answers] == [200] * STORM
    assert all(a.json()["triggered"] for a in answers)
    ticks = services.state["print-tick"].runs - ticks_before
    assert 1 <= ticks <= 2, f"{STORM} concurrent webhooks ran {ticks} ticks"
    assert len(sim_farm.bambuddy.log) <= 2 * one_tick, sim_farm.bambuddy.log.counts()
