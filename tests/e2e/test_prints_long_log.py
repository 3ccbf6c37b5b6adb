"""A long print log does not make a run hold everything it has seen (issue #17, target 8).

Before: a PrintSync kept every archive it read and one lock per part and per archive for its whole life, so
a backfill of 10,000 runs held 10,000 archives.
"""

from __future__ import annotations

from typing import Any

import pytest

from farmsync.prints import pipeline
from farmsync.prints import tick as ticks
from farmsync.prints.service import print_sync
from farmsync_sim.server import SimFarm


async def test_a_backfill_keeps_few_archives_and_no_idle_locks(
    sim_farm: SimFarm, farm_services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "ARCHIVE_CACHE", 2)
    sync = print_sync(farm_services(sync_concurrency=4))
    report = await ticks.backfill(sync)
    synced = [i for i in report.items if i.outcome == "synced"]
    assert report.ok and len({i.archive_id for i in synced}) > 2
    assert len(sync._archives) <= 2
    assert sync._ipn_locks == {} and sync._link_locks == {}
    links = {sim_farm.bambuddy.state.archives[i.archive_id]["external_url"] for i in synced}
    assert all(url and "/web/part/" in url for url in links)  # every back-link still set


async def test_keyed_lock_serialises_one_key_and_forgets_it() -> None:
    import asyncio

    locks: dict[Any, Any] = {}
    order: list[str] = []

    async def hold(name: str) -> None:
        async with pipeline.keyed_lock(locks, "k"):
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    await asyncio.gather(hold("a"), hold("b"))
    assert order == ["a in", "a out", "b in", "b out"] and locks == {}


async def test_a_backfill_report_keeps_few_lines_and_exact_totals(
    sim_farm: SimFarm, farm_services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from farmsync.prints import report as reports

    monkeypatch.setattr(reports, "DETAIL_LIMIT", 3)
    runs = sim_farm.bambuddy.state.list_print_log()
    completed = sorted(r["id"] for r in runs if r["status"] == "completed" and r["archive_id"] is not None)
    report = await ticks.backfill(print_sync(farm_services(sync_concurrency=4)))
    totals = report.totals()
    assert len(completed) > 3 and len(report.items) == 3 and report.items_omitted == len(completed) - 3
    assert sum(totals.values()) == len(completed) and report.ok
    run_ids = [i.run_id for i in report.items]
    assert run_ids == sorted(run_ids)  # kept lines in the planned order (oldest first), not finishing order
    batches = [s["batch"] for s in sim_farm.inventree.state.stock_items.values()]
    assert sum(1 for b in batches if str(b).startswith("bambuddy-")) == totals["synced"]  # every line counted
