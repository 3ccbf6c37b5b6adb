"""Calls concurrent workers of one run share instead of repeating (issue #13, item 9, prints side).

Both failed before: every worker whose first thumbnail met a 401 minted its own camera stream token, and the
reprints of one archive synced side by side each PATCHed the same back-link.
"""

from __future__ import annotations

from typing import Any

from farmsync.prints import tick as ticks
from farmsync.prints.service import print_sync
from farmsync_sim.server import SimFarm


async def test_one_camera_stream_token_per_run_is_shared_by_the_workers(
    sim_farm: SimFarm, farm_services: Any
) -> None:
    await ticks.tick(print_sync(farm_services()))
    state = sim_farm.bambuddy.state
    for n in range(4):  # four new parts: four workers fetch their first thumbnail at once
        state.add_print("B2-P1S", print_name=f"New part {n}", content_hash=f"{n}" * 64)
    state.auth_enabled = True
    sim_farm.bambuddy.knobs.update(latency_ms=40)
    sim_farm.bambuddy.log.clear()
    report = await ticks.tick(print_sync(farm_services(sync_concurrency=4)))  # a new process: no token yet
    assert sum("image" in i.writes for i in report.items) == 4 and report.ok
    minted = [e for e in sim_farm.bambuddy.log.entries if e.path.endswith("/printers/camera/stream-token")]
    assert len(minted) == 1


async def test_the_same_back_link_is_patched_once_per_run(sim_farm: SimFarm, farm_services: Any) -> None:
    services = farm_services(sync_concurrency=4)
    await ticks.tick(print_sync(services))
    sim_farm.bambuddy.knobs.update(latency_ms=40)
    state = sim_farm.bambuddy.state
    first = state.add_print("B1-X1-CARBON", print_name="Popular", content_hash="8" * 64)
    for printer in ("B2-P1S", "B1-X1-CARBON", "B2-P1S"):
        state.add_print(printer, reprint_of=first["archive_id"])
    sim_farm.bambuddy.log.clear()
    report = await ticks.tick(print_sync(services))
    assert sum(1 for i in report.items if i.outcome == "synced") == 4
    patches = [e for e in sim_farm.bambuddy.log.entries if e.method == "PATCH"]
    assert [e.path for e in patches] == [f"/api/v1/archives/{first['archive_id']}"]
    assert "/web/part/" in state.archives[first["archive_id"]]["external_url"]
