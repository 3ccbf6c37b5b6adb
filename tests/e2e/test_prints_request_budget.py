"""What one print costs InvenTree (issue #17, target 4), and writes that meet ``database is locked`` (target 3).

Before: a new part cost 11 InvenTree requests in a tick (the two parameter templates read again by every run,
each parameter looked up before it was created on a part made a moment ago); a create answered
``500 database is locked`` failed the print.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from farmsync.prints import tick as ticks
from farmsync.prints.service import print_sync
from farmsync_sim.server import SimFarm

NEW_PART_530 = [
    "GET /api/part/",  # look by IPN before creating
    "POST /api/part/",
    "POST /api/parameter/",
    "POST /api/parameter/",
    "PATCH /api/part/{id}/",  # image
    "GET /api/stock/",  # look by batch before creating
    "POST /api/stock/",
]


def inventree_calls(farm: SimFarm) -> list[str]:
    out = []
    for entry in farm.inventree.log.entries:
        path = "/".join("{id}" if seg.isdigit() else seg for seg in entry.path.split("/"))
        out.append(f"{entry.method} {path}")
    return out


@pytest.mark.parametrize("api_version", [530, 425])
async def test_a_new_part_costs_seven_inventree_requests(
    sim_farm: SimFarm, farm_services: Any, api_version: int
) -> None:
    sim_farm.inventree.configure({"api_version": api_version})
    services = farm_services()
    await ticks.tick(print_sync(services))  # the process's one-off reads (server info, templates) happen here
    state = sim_farm.bambuddy.state
    for n in range(2):  # every tick builds its own PrintSync: templates are still not read again
        state.add_print("B2-P1S", print_name=f"Budget part {n}", content_hash=f"{n}c" * 32)
        sim_farm.inventree.log.clear()
        report = await ticks.tick(print_sync(services))
        assert report.ok and [i.outcome for i in report.items] == ["synced"]
        calls = inventree_calls(sim_farm)
        expected = NEW_PART_530
        if api_version < 430:
            expected = [c.replace("/api/parameter/", "/api/part/parameter/") for c in NEW_PART_530]
        assert Counter(calls) == Counter(expected)
        part = report.items[0].part
        assert {p["data"] for p in _parameters(sim_farm, part)} == {
            _fmt(state.archives[report.items[0].archive_id]["filament_used_grams"]),
            _fmt(state.archives[report.items[0].archive_id]["print_time_seconds"]),
        }


async def test_a_repeat_print_costs_two(sim_farm: SimFarm, farm_services: Any) -> None:
    services = farm_services()
    first = await ticks.tick(print_sync(services))
    archive = next(i.archive_id for i in first.items if i.outcome == "synced")
    sim_farm.bambuddy.state.add_print("B2-P1S", reprint_of=archive)
    sim_farm.inventree.log.clear()
    report = await ticks.tick(print_sync(services))
    assert [i.outcome for i in report.items] == ["synced"]
    assert inventree_calls(sim_farm) == ["GET /api/stock/", "POST /api/stock/"]


async def test_parameters_of_a_part_found_by_ipn_are_still_looked_up(
    sim_farm: SimFarm, farm_services: Any
) -> None:
    """Only a part created a moment ago skips the lookup: a found part (store lost) may have them already."""
    first = await ticks.tick(print_sync(farm_services()))
    assert first.ok
    params_before = len(sim_farm.inventree.state.parameters)
    again = await ticks.backfill(print_sync(farm_services()))  # a new, empty store: every part found by IPN
    assert again.ok
    assert len(sim_farm.inventree.state.parameters) == params_before  # updated in place, none doubled


async def test_writes_answered_database_is_locked_are_retried_after_looking(
    sim_farm: SimFarm, farm_services: Any
) -> None:
    """Every third InvenTree write collides: each is retried (creates after looking again), none doubles."""
    sim_farm.inventree.knobs.update(fault_rate=0.35, fault_kinds={"locked": 1.0}, fault_seed=3)
    services = farm_services(sync_concurrency=4)
    report = await ticks.backfill(print_sync(services))
    locked = [e for e in sim_farm.inventree.log.entries if e.fault == "locked"]
    assert len(locked) >= 5  # the fault was really met, on creates too
    assert {e.method for e in locked} >= {"POST"}
    assert report.totals()["failed"] == 0 and report.totals()["parked"] == 0
    synced = [i for i in report.items if i.outcome == "synced"]
    batches = Counter(str(s["batch"]) for s in sim_farm.inventree.state.stock_items.values())
    assert all(batches[i.batch] == 1 for i in synced) and synced
    ipns = Counter(str(p.get("IPN")) for p in sim_farm.inventree.state.parts.values() if p.get("IPN"))
    assert max(ipns.values()) == 1
    keys = Counter(
        (p["template"], p.get("model_id", p.get("part")))
        for p in sim_farm.inventree.state.parameters.values()
    )
    assert max(keys.values()) == 1


def _parameters(farm: SimFarm, part: int | None) -> list[dict[str, Any]]:
    return [p for p in farm.inventree.state.parameters.values() if part in (p.get("model_id"), p.get("part"))]


def _fmt(value: float) -> str:
    return f"{float(value):.3f}".rstrip("0").rstrip(".")
