"""Location sync against a faked InvenTree: whole-quantity moves, a bad map, and the way back to storage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from farmsync.filament.report import Outcome
from farmsync.filament.run import run_filament
from farmsync.services import Services
from tests.fixtures.filament import FakeFarm

MakeServices = Callable[..., Services]


async def locations(services: Services, *, dry: bool = False) -> Any:
    return await run_filament(services, steps=["locations"], dry_run=dry)


def farm_with_spools(farm: FakeFarm) -> None:
    farm.item(1, "AA01", 812.5, location=10)
    farm.item(2, "AA02", 300.0, location=21)
    farm.spool(11, tag_uid="AA01")
    farm.spool(12, tag_uid="AA02")


async def test_an_assigned_spool_moves_whole_to_its_printer(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    farm_with_spools(filament_fake)
    filament_fake.assign(11, "B2-P1S", printer_id=2, ams=1, tray=3)
    filament_fake.assign(12, "b1-x1-carbon")
    report = await locations(filament_services())
    lines = {line.stock_item: line for line in report.locations.lines}
    assert lines[1].outcome is Outcome.APPLIED and (lines[1].from_location, lines[1].to_location) == (10, 22)
    assert lines[2].outcome is Outcome.UNCHANGED
    assert filament_fake.writes == [
        (
            "POST",
            "/api/stock/transfer/",
            {
                "items": [{"pk": 1, "quantity": "812.5"}],
                "location": 22,
                "notes": "farmsync: loaded in B2-P1S AMS 1 tray 3 (Bambuddy spool 11)",
            },
        )
    ]
    assert filament_fake.items[1]["location"] == 22
    again = await locations(filament_services())
    assert (
        all(line.outcome is Outcome.UNCHANGED for line in again.locations.lines)
        and len(filament_fake.writes) == 1
    )


async def test_the_current_quantity_is_moved_not_the_one_read_at_the_start(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    farm_with_spools(filament_fake)
    filament_fake.assign(11, "B1-X1")
    filament_fake.use(1, 11, 12.5)
    await run_filament(filament_services(), steps=["usage", "locations"], dry_run=False)
    transfer = filament_fake.writes[-1]
    assert transfer[1] == "/api/stock/transfer/" and transfer[2]["items"] == [{"pk": 1, "quantity": "800"}]


async def test_a_bad_map_entry_is_reported_and_nothing_moves_there(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    farm_with_spools(filament_fake)
    filament_fake.assign(11, "B1-X1")
    filament_fake.assign(12, "B2-P1S")
    services = filament_services(filament_printer_location_map={"B1": 99, "B2": 20})
    report = await locations(services)
    assert report.locations.problems == [
        "FILAMENT_PRINTER_LOCATION_MAP entry B1:99: location 99 does not exist in InvenTree",
        "FILAMENT_PRINTER_LOCATION_MAP entry B2:20: location 20 (Printers) is structural: "
        "InvenTree refuses to hold stock there",
    ]
    assert all(line.outcome is Outcome.FAILED for line in report.locations.lines)
    assert filament_fake.writes == [] and not report.ok


async def test_unmapped_printers_unmatched_spools_and_double_assignments_do_not_move(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    farm_with_spools(filament_fake)
    filament_fake.spool(13, tag_uid="FFFF")
    filament_fake.assign(11, "A0-MINI", printer_id=5)
    filament_fake.assign(13, "B1-X1")
    filament_fake.assign(12, "B1-X1", tray=1)
    filament_fake.assign(12, "B2-P1S", printer_id=2)
    report = await locations(filament_services())
    reasons = {(line.spool_id, line.outcome): line.reason for line in report.locations.lines}
    assert (
        "no FILAMENT_PRINTER_LOCATION_MAP prefix matches printer 'A0-MINI'" in reasons[(11, Outcome.SKIPPED)]
    )
    assert "no InvenTree stock item" in reasons[(13, Outcome.SKIPPED)]
    assert "several printers" in reasons[(12, Outcome.PENDING)]
    assert filament_fake.writes == []


async def test_unassigned_loaded_spools_go_back_to_storage_only_when_enabled(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    farm_with_spools(filament_fake)
    filament_fake.item(3, "ZZ-UNKNOWN", 50.0, location=22)  # in a printer location, but no Bambuddy spool
    off = await locations(filament_services())
    assert off.locations.lines == [] and filament_fake.writes == []
    report = await locations(filament_services(filament_return_unassigned_to_storage=True))
    [line] = report.locations.lines
    assert (line.stock_item, line.outcome, line.to_location) == (2, Outcome.APPLIED, 10)
    assert filament_fake.writes[0][2]["location"] == 10 and filament_fake.items[3]["location"] == 22


async def test_a_missing_loaded_root_never_sweeps_all_stock(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    farm_with_spools(filament_fake)
    services = filament_services(
        filament_return_unassigned_to_storage=True,
        filament_loaded_location_id=98,
        filament_printer_location_map={"B2": 22},
    )
    report = await locations(services)
    assert report.locations.problems == [
        "FILAMENT_LOADED_LOCATION_ID: location 98 does not exist in InvenTree"
    ]
    assert filament_fake.writes == []
