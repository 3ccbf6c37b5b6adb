"""The simulated InvenTree's capacity model (issue #17, target 3): a server that serves N requests at once.

Before it existed every simulated request was served at once however many came, so no benchmark could show
a client under-using or overloading a real 2-worker InvenTree.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from farmsync_sim.control import Knobs
from farmsync_sim.server import SimFarm


def headers(farm: SimFarm) -> dict[str, str]:
    return {"Authorization": f"Token {farm.inventree.token}"}


async def send_all(farm: SimFarm, requests: list[tuple[str, str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=farm.inventree_url, headers=headers(farm), timeout=10) as client:
        return await asyncio.gather(*(client.request(m, p, json=body) for m, p, body in requests))


async def test_at_most_capacity_requests_are_served_at_once(sim_farm: SimFarm) -> None:
    sim_farm.inventree.knobs.update(capacity=2, service_ms=150)
    sim_farm.inventree.app.peak_in_service = 0
    answers = await send_all(sim_farm, [("GET", "/api/part/?limit=1", None)] * 8)
    assert [a.status_code for a in answers] == [200] * 8
    assert sim_farm.inventree.app.peak_in_service == 2
    sim_farm.inventree.knobs.update(capacity=0)
    sim_farm.inventree.app.peak_in_service = 0
    await send_all(sim_farm, [("GET", "/api/part/?limit=1", None)] * 8)
    assert sim_farm.inventree.app.peak_in_service > 2  # unlimited: as many in service as arrive together


async def test_colliding_writes_answer_database_is_locked_and_change_nothing(sim_farm: SimFarm) -> None:
    sim_farm.inventree.knobs.update(capacity=4, service_ms=300, write_lock_ms=300)
    before = len(sim_farm.inventree.state.parts)
    creates = [("POST", "/api/part/", {"name": f"Locked {n}", "IPN": f"LCK-{n}"}) for n in range(4)]
    answers = await send_all(sim_farm, creates)
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 201 and statuses[-1] == 500
    locked = [a for a in answers if a.status_code == 500]
    assert all(a.json() == {"detail": "database is locked"} for a in locked)
    assert len(sim_farm.inventree.state.parts) - before == statuses.count(201)
    assert [e.fault for e in sim_farm.inventree.log.entries].count("locked") == len(locked)


async def test_reads_never_meet_the_writer_lock(sim_farm: SimFarm) -> None:
    sim_farm.inventree.knobs.update(capacity=4, service_ms=20, write_lock_ms=20)
    answers = await send_all(sim_farm, [("GET", "/api/part/?limit=1", None)] * 6)
    assert {a.status_code for a in answers} == {200}


async def test_knobs_over_the_control_api(sim_farm: SimFarm) -> None:
    async with httpx.AsyncClient(base_url=sim_farm.inventree_url) as client:
        got = (
            await client.patch("/_sim/knobs", json={"capacity": 2, "service_ms": 50, "write_lock_ms": 5})
        ).json()
        assert (got["capacity"], got["service_ms"], got["write_lock_ms"]) == (2, 50, 5)
        bad = await client.patch("/_sim/knobs", json={"write_lock_ms": 80})
        assert bad.status_code == 400 and "write_lock_ms" in bad.json()["detail"]


def test_knob_validation() -> None:
    with pytest.raises(ValueError):
        Knobs(capacity=-1)
    with pytest.raises(ValueError):
        Knobs(service_ms=5, write_lock_ms=6)
