"""The tick reads the print log the way the real server can answer it (bambuddy-api.md §2.5, §11).

Each test here failed on the old tick, which walked the log newest first and stopped at the first id at or below
an id cursor: same-second runs listed in ascending id, the next release's start-time order and a run whose
status changes after it first appears were all missed for good; a soft-deleted archive was retried and parked.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from farmsync.prints import tick as ticks
from farmsync.prints.pipeline import ARCHIVE_DELETED, HELD_REASON, PrintSync
from farmsync.prints.service import print_sync
from farmsync.services import Services
from farmsync_sim.server import SimFarm
from tests.fixtures.crash import SimulatedCrash

pytestmark = pytest.mark.usefixtures("store_backend")

PRINTER = "B1-X1-CARBON"


def batches(farm: SimFarm) -> Counter[str]:
    return Counter(
        str(i["batch"])
        for i in farm.inventree.state.stock_items.values()
        if str(i["batch"]).startswith("bambuddy-")
    )


def expected_batches(farm: SimFarm) -> set[str]:
    state = farm.bambuddy.state
    return {
        f"bambuddy-{r['archive_id']}-{r['id']}"
        for r in state.print_log.values()
        if r["status"] == "completed"
        and r["archive_id"] is not None
        and state.archives[r["archive_id"]]["deleted_at"] is None
    }


async def synced_by_ticks(services: Services) -> None:
    await ticks.tick(print_sync(services))


async def test_same_second_runs_listed_in_ascending_id_are_synced_by_ticks(
    sim_farm: SimFarm, farm_services: Any
) -> None:
    services = farm_services()
    state = sim_farm.bambuddy.state
    await synced_by_ticks(services)
    second = state.now() + timedelta(minutes=5)
    first_run = state.add_print(PRINTER, print_name="Queued A", content_hash="a" * 64, at=second)
    await synced_by_ticks(services)
    # a queued job on an identical printer finishes in the same second and is committed a moment later
    late_run = state.add_print("B2-P1S", print_name="Queued B", content_hash="a" * 64, at=second)
    page = state.list_print_log()
    assert [r["id"] for r in page[:2]] == [first_run["id"], late_run["id"]]  # the released order
    report = await ticks.tick(print_sync(services))
    assert [i.run_id for i in report.items if i.outcome == "synced"] == [late_run["id"]]
    assert set(batches(sim_farm)) == expected_batches(sim_farm)
    assert set(batches(sim_farm).values()) == {1}


async def test_start_time_order_of_the_next_release_is_synced_by_ticks(
    sim_farm: SimFarm, farm_services: Any
) -> None:
    sim_farm.bambuddy.configure({"print_log_order": "start_time"})
    services = farm_services()
    state = sim_farm.bambuddy.state
    await synced_by_ticks(services)
    now = state.now() + timedelta(minutes=5)
    short = state.add_print(PRINTER, print_name="Short", content_hash="c" * 64, duration_s=600, at=now)
    await synced_by_ticks(services)
    # started four hours ago, finishes after the short one: it lists below it
    long = state.add_print(
        "B2-P1S",
        print_name="Long",
        content_hash="d" * 64,
        duration_s=4 * 3600,
        at=now + timedelta(seconds=30),
    )
    order = [r["id"] for r in state.list_print_log()]
    assert order.index(short["id"]) < order.index(long["id"])
    report = await ticks.tick(print_sync(services))
    assert [i.run_id for i in report.items if i.outcome == "synced"] == [long["id"]]
    assert set(batches(sim_farm)) == expected_batches(sim_farm)


async def test_status_changed_after_first_seen_is_synced_while_in_the_window(
    sim_farm: SimFarm, farm_services: Any
) -> None:
    services = farm_services()
    state = sim_farm.bambuddy.state
    await synced_by_ticks(services)
    printing = state.add_print(PRINTER, print_name="Still going", content_hash="e" * 64, status="printing")
    failed = state.add_print("B2-P1S", print_name="Spaghetti", content_hash="f" * 64, status="failed")
    after = state.add_print(PRINTER, print_name="Quick one", content_hash="9" * 64)
    first = await ticks.tick(print_sync(services))
    assert [i.run_id for i in first.items] == [after["id"]]
    # the printer finishes; a user marks the failed run as good after all (PATCH, copied onto the run)
    state.update_archive(printing["archive_id"], {"status": "completed"})
    state.update_archive(failed["archive_id"], {"status": "completed"})
    second = await ticks.tick(print_sync(services))
    assert sorted(i.run_id for i in second.items if i.outcome == "synced") == [printing["id"], failed["id"]]
    assert set(batches(sim_farm)) == expected_batches(sim_farm)


async def test_idle_tick_is_one_bambuddy_request_in_both_orders(
    sim_farm: SimFarm, farm_services: Any
) -> None:
    services = farm_services()
    for order in ("released", "start_time"):
        sim_farm.bambuddy.configure({"print_log_order": order})
        await synced_by_ticks(services)
        sim_farm.bambuddy.log.clear()
        sim_farm.inventree.log.clear()
        idle = await ticks.tick(print_sync(services))
        assert idle.items == [] and len(sim_farm.bambuddy.log.entries) == 1
        assert sim_farm.inventree.log.entries == []
        assert "date_from=" in sim_farm.bambuddy.log.entries[0].query


async def test_an_old_id_cursor_is_migrated_without_duplicates(sim_farm: SimFarm, farm_services: Any) -> None:
    services = farm_services()
    state = sim_farm.bambuddy.state
    report = await ticks.backfill(print_sync(services))
    high = max(i.run_id for i in report.items if i.run_id)
    # the store as the old version left it: an id-only cursor
    read = await services.store.get_cursor(ticks.RUN_STREAM)
    await services.store.cas_cursor(ticks.RUN_STREAM, read.version, {"id": high, "at": 1.0})
    fresh = state.add_print(PRINTER, print_name="After the upgrade", content_hash="7" * 64)
    sim_farm.inventree.log.clear()
    migrated = await ticks.tick(print_sync(services))
    assert [i.run_id for i in migrated.items if i.outcome == "synced"] == [fresh["id"]]
    assert all(i.run_id == fresh["id"] for i in migrated.items)  # older runs were not even looked at
    cursor = (await services.store.get_cursor(ticks.RUN_STREAM)).value
    assert "time" in cursor and "id" not in cursor
    assert set(batches(sim_farm)) == expected_batches(sim_farm)


async def test_soft_deleted_archive_is_skipped_at_once_without_retries(
    sim_farm: SimFarm, farm_services: Any
) -> None:
    services = farm_services()
    state = sim_farm.bambuddy.state
    await synced_by_ticks(services)
    gone = state.add_print(PRINTER, print_name="Deleted soon", content_hash="5" * 64)
    kept = state.add_print("B2-P1S", print_name="Kept", content_hash="6" * 64)
    state.delete_archive(gone["archive_id"])  # Bambuddy's default delete: soft
    assert state.print_log[gone["id"]]["archive_id"] == gone["archive_id"]
    report = await ticks.tick(print_sync(services))
    by_run = {i.run_id: i for i in report.items}
    assert by_run[gone["id"]].outcome == "skipped" and by_run[gone["id"]].reason == ARCHIVE_DELETED
    assert by_run[kept["id"]].outcome == "synced" and report.ok
    record = services.sync_store.get("run", str(gone["id"]))
    assert record.state == "done" and record.attempts == 1
    sim_farm.bambuddy.log.clear()
    again = await ticks.tick(print_sync(services))
    assert again.items == [] and len(sim_farm.bambuddy.log.entries) == 1  # no retry, cursor moved on


async def test_backfill_twice_with_the_store_wiped_changes_nothing_in_inventree(
    sim_farm: SimFarm, farm_services: Any, make_store: Any
) -> None:
    first = await ticks.backfill(print_sync(farm_services()))
    assert first.totals()["synced"] > 0 and first.ok
    before = batches(sim_farm)
    sim_farm.inventree.log.clear()
    sim_farm.bambuddy.log.clear()
    # a new box, a lost data volume, a new Firestore collection prefix: the same farm, an empty store
    wiped = farm_services(store=make_store()[0])
    second = await ticks.backfill(print_sync(wiped))
    assert second.ok and second.totals()["synced"] == first.totals()["synced"]  # found, not created
    assert sim_farm.inventree.log.writes() == [] and sim_farm.bambuddy.log.writes() == []
    assert batches(sim_farm) == before
    tick = await ticks.tick(print_sync(farm_services(store=make_store()[0])))
    assert tick.ok and sim_farm.inventree.log.writes() == []


async def test_backfill_retry_now_retries_waiting_failures(sim_farm: SimFarm, farm_services: Any) -> None:
    services = farm_services()
    sim_farm.inventree.knobs.update(fault_rate=1.0, fault_kinds={"locked": 1.0})  # 500 database is locked
    failing = await ticks.backfill(print_sync(services))
    assert failing.totals()["failed"] > 0
    sim_farm.inventree.knobs.update(fault_rate=0.0)
    waiting = await ticks.backfill(print_sync(services))
    assert waiting.totals()["synced"] == 0 and waiting.totals()["pending"] > 0  # backing off
    now = await ticks.backfill(print_sync(services), retry_now=True)
    assert now.totals()["failed"] == 0 and now.totals()["pending"] == 0 and now.ok
    assert set(batches(sim_farm)) == expected_batches(sim_farm)
    assert set(batches(sim_farm).values()) == {1}


async def test_after_a_crash_the_report_names_held_runs_and_when(
    sim_farm: SimFarm, farm_services: Any, clock: Any, make_store: Any
) -> None:
    store, _ = make_store(clock=clock)
    services = farm_services(store=store)
    victim = min(r["id"] for r in sim_farm.bambuddy.state.print_log.values() if r["status"] == "completed")

    def crash(step: str, unit: Any) -> None:
        if step == "after_stock" and unit.run_id == victim:
            raise SimulatedCrash(step)

    sync = PrintSync(services.settings, services.store, services.bambuddy(), services.inventree(), hook=crash)
    with pytest.raises(SimulatedCrash):
        await ticks.tick(sync)
    assert await asyncio.to_thread(services.store.wait_idle, 30)
    report = await ticks.tick(print_sync(services))
    held = [i for i in report.items if i.reason == HELD_REASON]
    # the dying worker took its siblings down with it: every run it had started is held
    assert victim in {i.run_id for i in held} and all(i.retry_at for i in held)
    assert report.stopped == "held"
    assert sum("held by a claim until" in n for n in report.notes) == len(held)
    assert any(f"run:{victim}" in n for n in report.notes)
    assert any("picked up by the first tick after" in n for n in report.notes)
    assert all(len(f"note: {n}") <= 80 for n in report.notes)  # as the CLI prints them
    clock.advance(services.settings.lease_seconds + 1)
    later = await ticks.tick(print_sync(services))
    assert later.stopped == "complete" and victim in {i.run_id for i in later.items if i.outcome == "synced"}
    assert set(batches(sim_farm).values()) == {1}
