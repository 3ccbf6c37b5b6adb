"""Prints → inventory end to end: the pipeline against the simulated Bambuddy and InvenTree, on both stores."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC
from typing import Any

import pytest

from farmsync.errors import UpstreamError
from farmsync.prints import tick as ticks
from farmsync.prints.pipeline import PrintSync
from farmsync.prints.service import print_sync
from farmsync.services import Services
from farmsync_sim.server import SimFarm
from tests.fixtures.crash import SimulatedCrash

pytestmark = pytest.mark.usefixtures("store_backend")


def stock_by_batch(farm: SimFarm) -> Counter[str]:
    return Counter(
        item["batch"]
        for item in farm.inventree.state.stock_items.values()
        if str(item["batch"]).startswith("bambuddy-")
    )


def completed_runs(farm: SimFarm) -> list[dict[str, Any]]:
    return [
        r
        for r in farm.bambuddy.state.print_log.values()
        if r["status"] == "completed" and r["archive_id"] is not None
    ]


def inventree_writes(farm: SimFarm) -> list[Any]:
    return farm.inventree.log.writes()


async def test_backfill_makes_one_stock_item_per_completed_run(sim_farm: SimFarm, farm_services) -> None:
    services: Services = farm_services()
    report = await ticks.backfill(print_sync(services))
    runs = completed_runs(sim_farm)
    batches = stock_by_batch(sim_farm)
    assert sorted(batches) == sorted(f"bambuddy-{r['archive_id']}-{r['id']}" for r in runs)
    assert set(batches.values()) == {1}
    assert report.totals()["synced"] == len(runs) and report.ok
    skipped_reasons = {i.reason for i in report.items if i.outcome == "skipped"}
    assert skipped_reasons <= {None}  # the print log was read with status=completed: failed runs never appear

    state = sim_farm.inventree.state
    items = [i for i in state.stock_items.values() if str(i["batch"]).startswith("bambuddy-")]
    assert all(
        i["location"] == sim_farm.ids["INVENTREE_STOCK_LOCATION_ID"] and i["status"] == 10 for i in items
    )
    # reprints of one archive share the part
    by_archive = {r["archive_id"]: [] for r in runs}
    for r in runs:
        by_archive[r["archive_id"]].append(r["id"])
    reprinted = [a for a, ids in by_archive.items() if len(ids) > 1]
    assert reprinted, "the small scenario has a reprinted archive"
    for archive_id in reprinted:
        parts = {i["part"] for i in items if i["batch"].startswith(f"bambuddy-{archive_id}-")}
        assert len(parts) == 1
    # every synced part got its IPN, parameters, image; every archive its back-link
    for part_pk in {i["part"] for i in items}:
        part = state.parts[part_pk]
        assert part["IPN"].startswith("BMB-") and len(part["IPN"]) == 16
        assert part["category"] == sim_farm.ids["INVENTREE_PART_CATEGORY_ID"]
        assert part["image"], f"part {part_pk} has no image"
        names = {
            state.templates[p["template"]]["name"]
            for p in state.parameters.values()
            if part_pk in (p.get("part"), p.get("model_id"))
        }
        assert names == {"Weight", "PrintTime"}
    for archive_id in by_archive:
        link = sim_farm.bambuddy.state.archives[archive_id]["external_url"]
        assert link and "/web/part/" in link


async def test_second_backfill_writes_nothing(sim_farm: SimFarm, farm_services) -> None:
    services = farm_services()
    await ticks.backfill(print_sync(services))
    sim_farm.inventree.log.clear()
    sim_farm.bambuddy.log.clear()
    again = await ticks.backfill(print_sync(services))
    assert again.totals()["synced"] == 0
    assert inventree_writes(sim_farm) == [] and sim_farm.bambuddy.log.writes() == []
    assert sim_farm.inventree.log.entries == []  # done units need no InvenTree read either


async def test_tick_advances_cursor_and_idle_tick_costs_one_request(sim_farm: SimFarm, farm_services) -> None:
    services = farm_services()
    first = await ticks.tick(print_sync(services))
    # the cursor is a time: the newest run's created_at (every run before it is finished)
    newest = max(r["created_at"] for r in sim_farm.bambuddy.state.print_log.values())
    high = newest.replace(tzinfo=newest.tzinfo or UTC).isoformat()  # ISO 8601 with the zone
    assert first.cursor_after == high and first.totals()["synced"] == len(completed_runs(sim_farm))
    sim_farm.bambuddy.log.clear()
    sim_farm.inventree.log.clear()
    idle = await ticks.tick(print_sync(services))
    assert idle.items == [] and idle.cursor_after == high
    assert len(sim_farm.bambuddy.log.entries) == 1
    assert sim_farm.inventree.log.entries == []


async def test_new_print_and_reprint_are_picked_up_by_the_next_tick(sim_farm: SimFarm, farm_services) -> None:
    services = farm_services()
    await ticks.tick(print_sync(services))
    state = sim_farm.bambuddy.state
    first_archive = min(state.archives)
    parts_before = len(sim_farm.inventree.state.parts)
    reprint = state.add_print("B1-X1-CARBON", reprint_of=first_archive)
    fresh = state.add_print("B2-P1S", print_name="Brand new widget", content_hash="f" * 64)
    failed = state.add_print("B2-P1S", print_name="Spaghetti", status="failed")
    sim_farm.inventree.log.clear()
    report = await ticks.tick(print_sync(services))
    synced = {i.run_id for i in report.items if i.outcome == "synced"}
    assert synced == {reprint["id"], fresh["id"]} and failed["id"] not in synced
    assert len(sim_farm.inventree.state.parts) == parts_before + 1
    batches = stock_by_batch(sim_farm)
    assert batches[f"bambuddy-{first_archive}-{reprint['id']}"] == 1
    # the repeat part cost exactly one InvenTree request: the stock create
    reprint_requests = [e for e in sim_farm.inventree.log.entries]
    assert sum(1 for e in reprint_requests if e.method == "POST" and e.path == "/api/stock/") == 2


async def test_archive_mode_keeps_the_predecessor_rule(sim_farm: SimFarm, farm_services) -> None:
    services = farm_services(sync_unit="archive")
    report = await ticks.backfill(print_sync(services))
    archives = sim_farm.bambuddy.state.archives
    completed = {a for a, v in archives.items() if v["status"] == "completed" and not v.get("deleted_at")}
    assert sorted(stock_by_batch(sim_farm)) == sorted(f"bambuddy-{a}" for a in completed)
    # failed archives and uploads are not units at all (a user may still PATCH one to completed later)
    assert report.ok and {i.archive_id for i in report.items} == completed


async def test_predecessor_item_stands_for_the_earliest_run(sim_farm: SimFarm, farm_services) -> None:
    state = sim_farm.bambuddy.state
    runs_by_archive: dict[int, list[int]] = {}
    for r in completed_runs(sim_farm):
        runs_by_archive.setdefault(r["archive_id"], []).append(r["id"])
    archive_id = next(a for a, ids in runs_by_archive.items() if len(ids) > 1)
    inv = sim_farm.inventree.state
    part_pk = inv.next_pk("parts")
    inv.parts[part_pk] = {**next(iter(inv.parts.values())), "pk": part_pk, "name": "legacy", "IPN": "OLD-1"}
    legacy_pk = inv.next_pk("stock_items")
    inv.stock_items[legacy_pk] = {
        **next(iter(inv.stock_items.values())),
        "pk": legacy_pk,
        "part": part_pk,
        "batch": f"bambuddy-{archive_id}",
        "quantity": 1.0,
        "location": 8,
    }
    assert state.archives[archive_id]
    services = farm_services()
    report = await ticks.backfill(print_sync(services))
    earliest, *later = sorted(runs_by_archive[archive_id])
    by_run = {i.run_id: i for i in report.items}
    assert (
        by_run[earliest].stock_item == legacy_pk and "stock:adopted-archive-batch" in by_run[earliest].writes
    )
    assert all(by_run[r].stock_item != legacy_pk for r in later)
    assert f"bambuddy-{archive_id}-{earliest}" not in stock_by_batch(sim_farm)


@pytest.mark.parametrize("step", ["after_part", "after_stock", "before_done"])
async def test_crash_at_each_step_converges_without_duplicates(
    sim_farm: SimFarm, farm_services, clock, make_store, step: str
) -> None:
    store, _ = make_store(clock=clock)
    services = farm_services(store=store)
    victim = min(r["id"] for r in completed_runs(sim_farm))

    def crash(at: str, unit: Any) -> None:
        if at == step and unit.run_id == victim:
            raise SimulatedCrash(at)

    sync = PrintSync(services.settings, services.store, services.bambuddy(), services.inventree(), hook=crash)
    with pytest.raises(SimulatedCrash):
        await ticks.tick(sync)
    # a dead process sends nothing more; here the crashed tick's threads may still be finishing a store call
    assert await asyncio.to_thread(services.store.wait_idle, 30)
    clock.advance(services.settings.lease_seconds + 1)  # the dead worker's lease expires
    for _ in range(3):
        await ticks.tick(print_sync(services))
    batches = stock_by_batch(sim_farm)
    assert sorted(batches) == sorted(
        f"bambuddy-{r['archive_id']}-{r['id']}" for r in completed_runs(sim_farm)
    )
    assert set(batches.values()) == {1}
    record = services.sync_store.get("run", str(victim))
    assert record is not None and record.state == "done" and record.attempts == 2


async def test_faults_converge_to_the_fault_free_state(sim_farm_factory, farm_services) -> None:
    clean = sim_farm_factory(seed=7)
    faulty = sim_farm_factory(seed=7, fault_rate=0.2, fault_timeout=0.3)
    await ticks.backfill(print_sync(farm_services(farm=clean)))
    services = farm_services(farm=faulty, http_timeout_seconds=1.0, sync_max_attempts=50)
    failed_ticks = 0
    for _ in range(40):
        try:
            report = await ticks.tick(print_sync(services), budget=30)
        except (
            UpstreamError
        ):  # the print-log read itself failed: the tick fails cleanly, the next one resumes
            failed_ticks += 1
            continue
        done = services.sync_store.counts("run")["done"]
        if done == len(completed_runs(faulty)) and report.ok:
            break
        for record in services.sync_store.list("run", state="failed", limit=500):  # skip the backoff wait
            claim = services.sync_store.claim("run", record.key, lease_seconds=60, retry_parked=True)
            services.sync_store.release(claim, "retry now", max_attempts=50, retry_after=0)
    faulty.bambuddy.knobs.update(fault_rate=0.0)
    faulty.inventree.knobs.update(fault_rate=0.0)
    assert stock_by_batch(faulty) == stock_by_batch(clean)
    assert set(stock_by_batch(faulty).values()) == {1}
    assert len(faulty.inventree.state.parts) == len(clean.inventree.state.parts)


async def test_bambuddy_without_print_log_falls_back_to_archives(sim_farm: SimFarm, farm_services) -> None:
    from farmsync.validate import run_validation

    sim_farm.bambuddy.configure({"print_log": False})
    services = farm_services()
    report = await ticks.tick(print_sync(services))
    assert report.unit == "archive" and any("no print log" in n for n in report.notes)
    archives = sim_farm.bambuddy.state.archives
    completed = {a for a, v in archives.items() if v["status"] == "completed"}
    assert sorted(stock_by_batch(sim_farm)) == sorted(f"bambuddy-{a}" for a in completed)
    checks = {c["check"]: c for c in (await run_validation(services))["checks"]}
    assert checks["bambuddy.print_log"]["level"] == "warning"
    assert "per archive" in checks["bambuddy.print_log"]["message"]
