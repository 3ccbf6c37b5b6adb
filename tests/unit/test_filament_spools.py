"""Spool sync against a faked Bambuddy: the create body, exactly-once creates, updates that leave weight_used."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farmsync.filament.report import Outcome
from farmsync.filament.run import run_filament
from farmsync.filament.spools import SPOOL_NS
from farmsync.services import Services
from farmsync.store.sqlite import SqliteStore
from tests.fixtures.crash import SimulatedCrash
from tests.fixtures.filament import INVENTREE, FakeFarm
from tests.fixtures.store import ManualClock

MakeServices = Callable[..., Services]


async def spools(services: Services, *, dry: bool = False, hook: Any = None) -> Any:
    return await run_filament(services, steps=["spools"], dry_run=dry, hook=hook)


def posts(farm: FakeFarm) -> list[dict[str, Any]]:
    return [
        body for method, path, body in farm.writes if method == "POST" and path == "/api/v1/inventory/spools"
    ]


async def test_the_create_body_carries_inventree_facts(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    filament_fake.part(
        7,
        name="Bambu PETG HF Red",
        Material="PETG",
        Color="Red",
        RGBA="c12e1f",
        Label_Weight=(1, "kg"),
        Core_Weight=210,
    )
    filament_fake.item(1, "aa:bb:cc:dd", 612.34, part=7)
    report = await spools(filament_services())
    [line] = report.spools.lines
    assert line.outcome is Outcome.APPLIED and line.spool_id == 1
    assert posts(filament_fake) == [
        {
            "material": "PETG",
            "label_weight": 1000,
            "core_weight": 210,
            "weight_used": 387.7,
            "weight_locked": False,
            "tag_uid": "AABBCCDD",
            "note": f"InvenTree stock item 1 (Bambu PETG HF Red), batch aa:bb:cc:dd: {INVENTREE}/web/part/7/ "
            "(created by farmsync)",
            "color_name": "Red",
            "rgba": "C12E1FFF",
        }
    ]
    assert filament_fake.spools[1]["weight_locked"] is False
    again = await spools(filament_services())
    assert [(line.action, line.outcome) for line in again.spools.lines] == [("update", Outcome.UNCHANGED)]
    assert len(filament_fake.writes) == 1


async def test_defaults_fill_what_inventree_does_not_know_and_tray_uuid_source(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    filament_fake.item(1, "INV-0001", 1000.0)
    await spools(
        filament_services(
            filament_batch_source="tray_uuid",
            filament_default_material="PETG",
            filament_default_label_weight=750,
            filament_default_core_weight=180,
        )
    )
    [body] = posts(filament_fake)
    assert (body["material"], body["label_weight"], body["core_weight"], body["weight_used"]) == (
        "PETG",
        750,
        180,
        0,
    )
    assert body["tray_uuid"] == "INV-0001" and "tag_uid" not in body and "color_name" not in body


async def test_updates_write_only_known_differences_and_never_weight_used(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    filament_fake.part(7, Material="PETG", Colour_Name="Red", Label_Weight=1000)
    filament_fake.part(8)  # no parameters: defaults must not overwrite Bambuddy's values
    filament_fake.item(1, "AA01", 100.0, part=7)
    filament_fake.item(2, "AA02", 100.0, part=8)
    filament_fake.spool(11, tag_uid="AA01", material="PLA", color_name="Red", weight_used=10.0)
    filament_fake.spool(12, tag_uid="AA02", material="ASA", label_weight=500, weight_used=20.0)
    filament_fake.spool(13, tag_uid="AA03", archived_at="2026-01-01T00:00:00")
    filament_fake.item(3, "AA03", 100.0, part=7)
    report = await spools(filament_services())
    lines = {line.stock_item: line for line in report.spools.lines}
    assert lines[1].outcome is Outcome.APPLIED and lines[1].changes == {"material": "PETG"}
    assert lines[2].outcome is Outcome.UNCHANGED and lines[3].outcome is Outcome.UNCHANGED
    assert "archived" in (lines[3].reason or "")
    assert filament_fake.writes == [("PATCH", "/api/v1/inventory/spools/11", {"material": "PETG"})]
    assert filament_fake.spools[11]["weight_used"] == 10.0 and filament_fake.spools[12]["material"] == "ASA"


async def test_dry_run_plans_the_create_and_claims_nothing(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    filament_fake.item(1, "AABB", 500.0)
    services = filament_services()
    report = await spools(services, dry=True)
    assert report.spools.lines[0].outcome is Outcome.PLANNED and filament_fake.writes == []
    assert [(w.system, w.method, w.path) for w in report.writes] == [
        ("bambuddy", "POST", "/api/v1/inventory/spools")
    ]
    assert await services.store.list(SPOOL_NS) == []


async def test_concurrent_runs_create_one_spool_per_batch(
    filament_fake: FakeFarm, filament_services: MakeServices, tmp_path: Path
) -> None:
    for pk in range(1, 6):
        filament_fake.item(pk, f"AA0{pk}", 500.0)
    path = tmp_path / "shared.sqlite3"
    reports = await asyncio.gather(*(spools(filament_services(store=SqliteStore(path))) for _ in range(6)))
    assert len(posts(filament_fake)) == 5
    assert sorted(s["tag_uid"] for s in filament_fake.spools.values()) == [f"AA0{pk}" for pk in range(1, 6)]
    created = [line for r in reports for line in r.spools.lines if line.outcome is Outcome.APPLIED]
    assert len(created) == 5


@pytest.mark.parametrize("point", ["spool_after_claim", "spool_after_create"])
async def test_a_crash_never_makes_a_second_spool(
    filament_fake: FakeFarm, filament_services: MakeServices, tmp_path: Path, point: str
) -> None:
    filament_fake.item(1, "AABB", 500.0)
    clock = ManualClock()
    store = SqliteStore(tmp_path / "crash.sqlite3", clock=clock)

    def hook(where: str, key: str) -> None:
        if where == point:
            raise SimulatedCrash(key)

    with pytest.raises(SimulatedCrash):
        await spools(filament_services(store=store), hook=hook)
    clock.advance(filament_services().settings.lease_seconds + 1)
    report = await spools(filament_services(store=store))
    assert len(posts(filament_fake)) == 1
    [line] = report.spools.lines
    assert line.outcome is (Outcome.UNCHANGED if point == "spool_after_create" else Outcome.APPLIED)


async def test_a_spool_deleted_in_bambuddy_is_created_again_once(
    filament_fake: FakeFarm, filament_services: MakeServices, tmp_path: Path
) -> None:
    filament_fake.item(1, "AABB", 500.0)
    path = tmp_path / "store.sqlite3"
    await spools(filament_services(store=SqliteStore(path)))
    del filament_fake.spools[1]
    await asyncio.gather(*(spools(filament_services(store=SqliteStore(path))) for _ in range(3)))
    assert len(posts(filament_fake)) == 2
    await spools(filament_services(store=SqliteStore(path)))
    assert len(posts(filament_fake)) == 2
