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
