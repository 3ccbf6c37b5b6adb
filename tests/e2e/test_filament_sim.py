"""The filament pipeline end to end on the simulated Bambuddy + InvenTree, on both store backends.

Covers: a full run and its idempotent repeat, a dry run that writes nothing (and plans what the real run then
does), eight concurrent ticks sharing only the store, a crash at each step of a usage row, the depleted spool on
API 425 (history deleted with the item) and 530 (history kept, item null), a conflict, a bad location map, and a
usage run repeated on an empty store (InvenTree unchanged, the history read once per scope).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farmsync.filament.page import SNAPSHOT_KEY, make_plan, plan_digest, record_snapshot, spools_of
from farmsync.filament.report import Outcome
from farmsync.filament.run import run_filament
from farmsync.filament.status import filament_status
from farmsync.filament.usage import USAGE_NS, USAGE_STREAM, marker
from farmsync.services import Services, set_services
from farmsync.settings import Settings, load_settings
from farmsync.store import State, Store
from farmsync.web.handlers import filament as routes
from farmsync_sim.server import SimFarm
from tests.fixtures.filament import make_call as call
from tests.fixtures.store import ManualClock, open_spec

MakeStore = Callable[..., tuple[Store, dict[str, Any]]]


class Crash(BaseException):
    """Stops a run dead, like a killed process."""


def sim_settings(farm: SimFarm, data_dir: Path, **overrides: Any) -> Settings:
    ids = farm.ids
    values: dict[str, Any] = {
        "bambuddy_base_url": farm.bambuddy_url,
        "bambuddy_api_key": farm.api_key,
        "inventree_base_url": farm.inventree_url,
        "inventree_token": farm.token,
        "filament_tracking_enabled": True,
        "filament_dry_run": False,
        "filament_part_category_id": ids["FILAMENT_PART_CATEGORY_ID"],
        "filament_storage_location_id": ids["FILAMENT_STORAGE_LOCATION_ID"],
        "filament_loaded_location_id": ids["FILAMENT_LOADED_LOCATION_ID"],
        "filament_printer_location_map": ids["FILAMENT_PRINTER_LOCATION_MAP"],
        "data_dir": data_dir,
    }
    values.update(overrides)
    return load_settings("/dev/null", **values)


@pytest.fixture
def farm(sim_farm: SimFarm) -> Iterator[SimFarm]:
    yield sim_farm
    sim_farm.inventree.configure({"api_version": sim_farm.inventree.default_api_version})


@pytest.fixture
async def services_for(farm: SimFarm, make_store: MakeStore, tmp_path: Path) -> Any:
    """``make(spec=None, clock=None, **settings)``: Services on the farm with its own handle on a shared store."""
    made: list[Services] = []
    specs: dict[str, dict[str, Any]] = {}

    def make(
        spec: dict[str, Any] | None = None, clock: ManualClock | None = None, **overrides: Any
    ) -> Services:
        if spec is None:
            store, spec = make_store(clock=clock)
            specs["last"] = spec
        else:
            store = open_spec(spec, clock)
        services = Services(sim_settings(farm, tmp_path, **overrides), store=store)
        made.append(services)
        return services

    make.specs = specs  # type: ignore[attr-defined]
    yield make
    for services in made:
        for client in (services._bambuddy, services._inventree):
            if client is not None:
                await client.aclose()


def quantities(farm: SimFarm) -> dict[str, float]:
    return {i["batch"]: i["quantity"] for i in farm.inventree.state.stock_items.values()}


def expected_after_usage(farm: SimFarm, after: int = 0) -> dict[str, float]:
    """What each batch holds once every completed usage row after ``after`` is subtracted (clamped at 0)."""
    tags = {s["id"]: (s["tag_uid"] or "").upper() for s in farm.bambuddy.state.spools.values()}
    left = quantities(farm)
    for row in sorted(farm.bambuddy.state.usage.values(), key=lambda r: r["id"]):
        tag = tags.get(row["spool_id"])
        if row["id"] > after and row["status"] == "completed" and tag in left and row["weight_used"] >= 0.05:
            left[tag] = max(0.0, round(left[tag] - row["weight_used"], 5))
    return {batch: q for batch, q in left.items() if q > 0}


def markers(farm: SimFarm) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in farm.inventree.state.tracking.values():
        if row["notes"].startswith("bambuddy:usage:"):
            counts[row["notes"]] = counts.get(row["notes"], 0) + 1
    return counts


def writes(farm: SimFarm) -> list[tuple[str, str]]:
    return [(e.method, e.path) for sim in (farm.bambuddy, farm.inventree) for e in sim.log.writes()]


async def skip_scenario_usage(services: Services, farm: SimFarm) -> int:
    high = max(farm.bambuddy.state.usage)
    await services.store.cas_cursor(USAGE_STREAM, None, {"id": high})
    return high


async def test_full_run_then_a_repeat_writes_nothing(farm: SimFarm, services_for: Any) -> None:
    facts = farm.describe()["facts"]
    expected = expected_after_usage(farm)
    services = services_for()
    report = await run_filament(services)
    assert report.ok and not report.conflicts, report.errors
    assert quantities(farm) == pytest.approx(expected)
    assert all(n == 1 for n in markers(farm).values()) and markers(farm)
    misplaced = next(
        i for i in farm.inventree.state.stock_items.values() if i["batch"] == facts["misplaced_spool_tag"]
    )
    assert misplaced["location"] != farm.ids["FILAMENT_SHELF_LOCATION_ID"]
    created = [
        s for s in farm.bambuddy.state.spools.values() if s["tag_uid"] == facts["missing_in_bambuddy_batch"]
    ]
    assert len(created) == 1 and created[0]["weight_used"] == 0.0 and created[0]["weight_locked"] is False
    assert (await services.store.get_cursor(USAGE_STREAM)).value["id"] == max(farm.bambuddy.state.usage)

    farm.bambuddy.log.clear()
    farm.inventree.log.clear()
    again = await run_filament(services)
    assert writes(farm) == [] and again.writes == [] and again.ok
    status = await filament_status(services)
    assert status.counts["matched"] == 6 and status.counts["missing_in_bambuddy"] == 0
    assert status.counts["pending_usage"] == 0 and status.counts["missing_in_inventree"] == 1
    assert status.last_run is not None and status.last_run["ok"]


async def test_a_dry_run_writes_nothing_and_plans_the_real_run(farm: SimFarm, services_for: Any) -> None:
    before = quantities(farm)
    services = services_for()
    dry = await run_filament(services, dry_run=True)
    assert writes(farm) == [] and quantities(farm) == before
    assert await services.store.list(USAGE_NS) == [] and await services.store.get_cursor(USAGE_STREAM) is None
    assert {w.path for w in dry.writes} == {
        "/api/stock/remove/",
        "/api/stock/transfer/",
        "/api/v1/inventory/spools",
    }
    real = await run_filament(services, dry_run=False)
    assert sorted(writes(farm)) == sorted((w.method, w.path) for w in real.writes)
    assert sorted((w.method, w.path, repr(w.body)) for w in real.writes) == sorted(
        (w.method, w.path, repr(w.body)) for w in dry.writes
    )


async def test_eight_concurrent_ticks_subtract_each_row_once(farm: SimFarm, services_for: Any) -> None:
    first = services_for()
    spec = services_for.specs["last"]
    state = farm.bambuddy.state
    for n in range(10):
        state.add_usage(1 + n % 5, 11.5 + n, print_name=f"part {n}")
    expected = expected_after_usage(farm)
    ticks = [first] + [services_for(spec) for _ in range(7)]
    reports = await asyncio.gather(*(run_filament(s, trigger="tick") for s in ticks))
    assert all(not r.errors for r in reports)
    settle = await run_filament(services_for(spec))
    assert not [w for w in settle.writes if w.path == "/api/stock/remove/"]
    assert quantities(farm) == pytest.approx(expected)
    counts = markers(farm)
    assert len(counts) == sum(1 for r in state.usage.values() if r["status"] == "completed")
    assert set(counts.values()) == {1}
    tags = [s["tag_uid"] for s in state.spools.values()]
    assert len(tags) == len(set(tags))  # the missing spool was created once
    batches = [i["batch"] for i in farm.inventree.state.stock_items.values()]
    assert len(batches) == len(set(batches))  # no transfer split an item
    assert (await first.store.get_cursor(USAGE_STREAM)).value["id"] == max(state.usage)


@pytest.mark.parametrize("point", ["after_claim", "after_remove", "before_done"])
async def test_a_crash_at_each_step_still_subtracts_once(
    farm: SimFarm, services_for: Any, point: str
) -> None:
    clock = ManualClock()
    services = services_for(clock=clock)
    spec = services_for.specs["last"]
    await skip_scenario_usage(services, farm)
    row = farm.bambuddy.state.add_usage(1, 42.5)
    before = quantities(farm)
    tag = farm.bambuddy.state.spools[1]["tag_uid"]

    def hook(where: str, key: str) -> None:
        if where == point:
            raise Crash(key)

    with pytest.raises(Crash):
        await run_filament(services, steps=["usage"], hook=hook)
    clock.advance(services.settings.lease_seconds + 1)
    report = await run_filament(services_for(spec, clock=clock), steps=["usage"])
    [line] = report.usage.lines
    assert line.usage_id == row["id"] and line.outcome in (Outcome.APPLIED, Outcome.UNCHANGED)
    assert line.recovered is (point != "after_claim")
    assert quantities(farm)[tag] == pytest.approx(before[tag] - 42.5)
    assert markers(farm) == {marker(row["id"]): 1}
    assert (await services.store.get(USAGE_NS, str(row["id"]))).state is State.DONE


@pytest.mark.parametrize("api", [425, 530])
async def test_a_depleted_spool_is_charged_once_and_not_lost(
    farm: SimFarm, services_for: Any, api: int
) -> None:
    farm.inventree.configure({"api_version": api})
    clock = ManualClock()
    services = services_for(clock=clock)
    spec = services_for.specs["last"]
    await skip_scenario_usage(services, farm)
    tag = farm.bambuddy.state.spools[3]["tag_uid"]
    item = next(i for i in farm.inventree.state.stock_items.values() if i["batch"] == tag)
    pk, left = item["pk"], item["quantity"]
    row = farm.bambuddy.state.add_usage(3, left + 25.0)

    def hook(where: str, key: str) -> None:
        if where == "after_remove":
            raise Crash(key)

    with pytest.raises(Crash):
        await run_filament(services, steps=["usage"], hook=hook)
    assert pk not in farm.inventree.state.stock_items  # InvenTree deleted the emptied item
    history = [t for t in farm.inventree.state.tracking.values() if t["notes"] == marker(row["id"])]
    assert len(history) == (1 if api >= 519 else 0)  # 425: deleted with the item; 530: kept with item null
    assert all(t["item"] is None for t in history)
    clock.advance(services.settings.lease_seconds + 1)
    later = farm.bambuddy.state.add_usage(3, 10.0)
    report = await run_filament(services_for(spec, clock=clock), steps=["usage"])
    lines = {line.usage_id: line for line in report.usage.lines}
    assert lines[row["id"]].recovered and lines[row["id"]].depleted
    assert lines[later["id"]].outcome is Outcome.SKIPPED and lines[later["id"]].depleted
    assert report.usage.cursor_after == later["id"]
    removals = farm.inventree.log.find(method="POST", path="/api/stock/remove/")
    assert len(removals) == 1
    status = await filament_status(services_for(spec, clock=clock))
    assert status.counts["pending_usage"] == 0


async def test_a_conflict_is_reported_and_never_written(farm: SimFarm, services_for: Any) -> None:
    state = farm.bambuddy.state
    tag = state.spools[2]["tag_uid"]
    twin = state.create_spool({"material": "PLA", "tray_uuid": tag.lower()})
    state.add_usage(twin["id"], 20.0)
    services = services_for()
    await skip_scenario_usage(services, farm)
    state.add_usage(2, 15.0)
    status = await filament_status(services)
    [conflict] = status.conflicts
    assert conflict.kind == "spools" and conflict.spools == [2, twin["id"]]
    assert [line.reason.split(":")[0] for line in status.pending_usage] == ["conflict"]
    report = await run_filament(services)
    item = next(i for i in farm.inventree.state.stock_items.values() if i["batch"] == tag)
    touched = {w.body["items"][0]["pk"] for w in report.writes if w.system == "inventree"}
    assert item["pk"] not in touched and all(line.outcome is Outcome.PENDING for line in report.usage.lines)


async def test_a_bad_location_map_is_reported_and_moves_nothing(farm: SimFarm, services_for: Any) -> None:
    printers = farm.ids["FILAMENT_PRINTER_LOCATION_MAP"].split(",")
    mapping = {"B1": 999, "B2": farm.ids["FILAMENT_LOADED_LOCATION_ID"]}
    mapping.update({p.split(":")[0]: int(p.split(":")[1]) for p in printers[2:]})
    services = services_for(filament_printer_location_map=mapping)
    report = await run_filament(services, steps=["locations"])
    problems = report.locations.problems
    assert "FILAMENT_PRINTER_LOCATION_MAP entry B1:999: location 999 does not exist in InvenTree" in problems
    assert any(
        p.startswith("FILAMENT_PRINTER_LOCATION_MAP entry B2:3: location 3 (Printers) is structural")
        for p in problems
    )
    assert farm.inventree.log.count(method="POST", path="/api/stock/transfer/") == 0
    assert not report.ok and [line.outcome for line in report.locations.lines].count(Outcome.FAILED) == 2


async def test_routes_default_to_a_dry_run_and_report_status(farm: SimFarm, services_for: Any) -> None:
    services = services_for(filament_dry_run=True)
    set_services(services)
    try:
        tick = await routes.tick(call(body=b'{"specversion": "1.0", "data": "e30="}'))
        status = await routes.status(call())
        applied = await routes.sync_usage(call("dry_run=false"))
    finally:
        set_services(None)
    assert tick["dry_run"] and tick["steps"] == ["usage", "locations", "spools"] and tick["writes"]
    assert status["counts"]["pending_usage"] == len(
        [w for w in tick["writes"] if w["path"] == "/api/stock/remove/"]
    )
    assert status["counts"]["missing_in_bambuddy"] == 1 and status["counts"]["loaded"] == 4
    assert not applied["dry_run"] and applied["ok"]
    assert writes(farm) == [("POST", "/api/stock/remove/")] * len(applied["writes"])


# --- a lost store: InvenTree's history is the ledger ------------------------------------------------------------
# Each test runs the usage step, throws the store away (a new SQLite file, a new Firestore collection prefix: a
# new box, a lost data/ volume, a move between backends) and runs it again: InvenTree must not change at all. One
# spool runs out in the first run, so the item InvenTree deleted is covered on each version's terms: below API 450
# its history goes with it, 450-518 keep the earlier rows but not the emptying removal, 519+ keep everything.


def usage_in_inventree(farm: SimFarm) -> tuple[dict[str, float], dict[str, int], int]:
    inv = farm.inventree.state
    return quantities(farm), markers(farm), len(inv.tracking)


@pytest.mark.parametrize("api", [425, 450, 530])
async def test_usage_twice_with_the_store_wiped_in_between(
    farm: SimFarm, services_for: Any, api: int
) -> None:
    farm.inventree.configure({"api_version": api})
    state = farm.bambuddy.state
    tag = state.spools[3]["tag_uid"]
    item = next(i for i in farm.inventree.state.stock_items.values() if i["batch"] == tag)
    small = state.add_usage(3, 10.0, print_name="before it ran out")
    emptying = state.add_usage(3, item["quantity"] - 10.0 + 25.0, print_name="ran out")
    after = state.add_usage(3, 5.0, print_name="nothing left")
    for n in range(6):
        state.add_usage(1 + n % 2, 3.5 + n, print_name=f"part {n}")
    first = await run_filament(services_for(), steps=["usage"])
    assert first.ok and item["pk"] not in farm.inventree.state.stock_items
    assert set(markers(farm).values()) == {1}
    before = usage_in_inventree(farm)
    farm.inventree.log.clear()

    wiped = services_for()  # a fresh store of the same backend
    again = await run_filament(wiped, steps=["usage"])
    assert farm.inventree.log.writes() == [] and again.writes == []
    assert usage_in_inventree(farm) == before
    lines = {line.usage_id: line for line in again.usage.lines}
    ours = {uid for uid, row in state.usage.items() if row["spool_id"] == 3 and row["status"] == "completed"}
    assert {small["id"], emptying["id"], after["id"]} <= ours
    others = [line for uid, line in lines.items() if uid not in ours]
    assert others and all(line.finished for line in others)
    assert all(line.recovered for line in others if line.outcome is not Outcome.SKIPPED)
    status = await filament_status(services_for())
    depleted = [v.tag_uid for v in status.depleted]
    if api >= 450:  # the history outlives the deleted item: the spool's rows settle, it shows as depleted
        assert all(lines[uid].finished for uid in ours) and again.usage.cursor_after == max(state.usage)
        assert lines[after["id"]].outcome is Outcome.SKIPPED and lines[after["id"]].depleted
        assert depleted == [tag] and tag not in [v.tag_uid for v in status.missing_in_inventree]
        page = await record_snapshot(services_for())  # what the operator's page shows
        shown = [s for s in page["spools"] if s["state"] == "depleted"]
        assert page["counts"]["depleted"] == 1 and len(shown) == 1
        assert shown[0]["name"].startswith(state.spools[3]["material"]) and tag in shown[0]["name"]
        assert shown[0]["reason"].startswith("ran out")
    else:  # below 450 nothing in InvenTree remembers the item: its rows wait, and are never charged twice
        assert all(lines[uid].outcome is Outcome.PENDING for uid in ours)
    third = await run_filament(wiped, steps=["usage"])
    assert farm.inventree.log.writes() == [] and third.ok


async def test_a_locked_removal_is_sent_again_in_the_same_run_once_the_history_shows_it_did_not_land(
    farm: SimFarm, services_for: Any
) -> None:
    """InvenTree on SQLite answers ``500 database is locked`` and rolls the write back (inventree-api.md §6).
    Each row is sent again in the same run after its history shows it did not land, so a row neither waits out a
    30 s backoff (found by the scale-out benchmark) nor is charged twice."""
    expected = expected_after_usage(farm)
    farm.inventree.knobs.update(fault_rate=0.4, fault_kinds={"locked": 1.0}, fault_seed=7)
    try:
        report = await run_filament(services_for(), steps=["usage"])
    finally:
        farm.inventree.knobs.update(fault_rate=0.0)
    removals = farm.inventree.log.find(method="POST", path="/api/stock/remove/")
    assert any(e.fault == "locked" for e in removals), "the run met no locked answer: the test proves nothing"
    assert report.ok, [(line.usage_id, line.error) for line in report.usage.lines if not line.finished]
    assert quantities(farm) == pytest.approx(expected)
    assert markers(farm) and set(markers(farm).values()) == {1}


async def test_the_history_is_read_once_per_scope_not_per_row(farm: SimFarm, services_for: Any) -> None:
    farm.inventree.configure({"api_version": 530})
    state = farm.bambuddy.state
    for n in range(40):
        state.add_usage(1 + n % 4, 1.5, print_name=f"part {n}")
    await run_filament(services_for(), steps=["usage"])
    farm.inventree.log.clear()
    again = await run_filament(services_for(), steps=["usage"])
    reads = farm.inventree.log.find(method="GET", path="/api/stock/track/")
    parts = {
        i["part"]
        for i in farm.inventree.state.stock_items.values()
        if i["batch"] in {state.spools[s]["tag_uid"] for s in (1, 2, 3, 4)}
    }
    assert 0 < len(reads) <= len(parts) and again.usage.history_reads == len(reads)
    assert farm.inventree.log.writes() == []


async def test_failed_runs_write_partial_usage_and_the_grams_left_out_are_reported(
    farm: SimFarm, services_for: Any
) -> None:
    state = farm.bambuddy.state
    partial = [r for r in state.usage.values() if r["status"] != "completed"]
    assert {r["status"] for r in partial} >= {"failed", "cancelled"}
    for row in partial:  # the grams used so far: a share of the sliced estimate, not nothing and not all
        assert 0 < row["weight_used"] < state.archives[row["archive_id"]]["filament_used_grams"]
    per_spool: dict[int, float] = {}
    for row in partial:
        per_spool[row["spool_id"]] = round(per_spool.get(row["spool_id"], 0.0) + row["weight_used"], 3)
    services = services_for()
    dry = await run_filament(services, steps=["usage"], dry_run=True)
    assert {e.spool_id: e.grams for e in dry.usage.left_out} == per_spool
    status = await filament_status(services)
    assert {e.spool_id: e.grams for e in status.usage_left_out} == per_spool
    assert f"{sum(per_spool.values()):g} g" in (status.usage_left_out_note or "")
    page = await record_snapshot(services)
    assert "FILAMENT_USAGE_SUCCESS_STATUSES" in page["left_out_note"]
    assert {e["grams"] for e in page["left_out"]} == set(per_spool.values())
    await run_filament(services, steps=["usage"])
    before = quantities(farm)
    counted = services_for(filament_usage_success_statuses="completed,failed,aborted,cancelled")
    await counted.store.cas_cursor(USAGE_STREAM, None, {"id": 0})
    report = await run_filament(counted, steps=["usage"])
    charged = {line.usage_id for line in report.usage.lines if line.outcome is Outcome.APPLIED}
    assert charged and charged <= {r["id"] for r in partial}  # the completed rows were done already
    assert sum(before.values()) - sum(quantities(farm).values()) == pytest.approx(
        sum(r["weight_used"] for r in partial if r["id"] in charged)
    )


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry", "real"])
async def test_a_filament_tick_costs_what_its_run_costs(
    farm: SimFarm, services_for: Any, dry_run: bool
) -> None:
    """#17: the page's snapshot after a tick is built from what the run read and planned, so the tick makes the
    upstream requests of the run alone (it used to read the status and make a dry-run plan again, 2-3× the
    run), and the snapshot is the one a fresh status read and a fresh plan would give."""

    def requests() -> list[tuple[str, str]]:
        """The upstream requests since the last call, in a stable order (usage rows run side by side)."""
        made = sorted((e.method, e.path) for sim in (farm.bambuddy, farm.inventree) for e in sim.log.entries)
        farm.bambuddy.log.clear()
        farm.inventree.log.clear()
        return made

    services = services_for(filament_dry_run=dry_run)
    await run_filament(services)  # a real run settles the farm: the runs below find the same state
    requests()
    await run_filament(services)
    bare = requests()
    set_services(services)
    try:
        await routes.tick(call())
    finally:
        set_services(None)
    ticked = requests()
    # the one read the run does not make: the farm has a Bambuddy spool with no InvenTree stock, and the page
    # reads InvenTree's emptied items to tell whether it ran out or is missing
    status_only = [("GET", "/api/stock/")]
    assert bare and sorted(bare + status_only) == ticked

    shown = await services.store.get_value("meta", SNAPSHOT_KEY)
    status = await filament_status(services)
    plan, _ = await make_plan(services)
    assert shown["spools"] == spools_of(status) and shown["counts"] == status.counts
    assert shown["pending_usage"] == len(status.pending_usage)
    assert shown["problems"] == status.location_problems + status.warnings
    assert shown["plan"]["digest"] == plan_digest(plan.writes)
    assert shown["plan"]["count"] == len(plan.writes) and shown["plan"]["steps"] == plan.steps
