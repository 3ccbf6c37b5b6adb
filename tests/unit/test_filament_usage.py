"""Usage sync rules against a faked Bambuddy + InvenTree: exactly once, guards, cursor, depletion, recovery."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farmsync.filament.report import Outcome
from farmsync.filament.run import run_filament
from farmsync.filament.usage import INTENT_NS, USAGE_NS, USAGE_STREAM
from farmsync.services import Services
from farmsync.store import State
from farmsync.store.sqlite import SqliteStore
from tests.fixtures.crash import SimulatedCrash
from tests.fixtures.filament import FakeFarm
from tests.fixtures.store import ManualClock

MakeServices = Callable[..., Services]


def crash_at(point: str) -> Callable[[str, str], None]:
    def hook(where: str, key: str) -> None:
        if where == point:
            raise SimulatedCrash(f"{where} {key}")

    return hook


async def usage(services: Services, *, dry: bool = False, hook: Any = None) -> Any:
    return await run_filament(services, steps=["usage"], dry_run=dry, hook=hook)


def one_spool(farm: FakeFarm, grams: float = 500.0) -> None:
    farm.item(1, "AA:BB:CC:DD", grams)
    farm.spool(11, tag_uid="AABBCCDD")


async def test_each_successful_row_is_subtracted_once(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    one_spool(filament_fake)
    filament_fake.use(1, 11, 30.0)
    filament_fake.use(2, 11, 5.0, status="failed")
    filament_fake.use(3, 11, 0.01)
    filament_fake.use(4, 11, 20.25, status="Completed")
    services = filament_services()
    report = await usage(services)
    outcomes = {line.usage_id: line.outcome for line in report.usage.lines}
    assert outcomes == {1: Outcome.APPLIED, 2: Outcome.SKIPPED, 3: Outcome.SKIPPED, 4: Outcome.APPLIED}
    assert filament_fake.writes == [
        (
            "POST",
            "/api/stock/remove/",
            {"items": [{"pk": 1, "quantity": "30"}], "notes": "bambuddy:usage:1:"},
        ),
        (
            "POST",
            "/api/stock/remove/",
            {"items": [{"pk": 1, "quantity": "20.25"}], "notes": "bambuddy:usage:4:"},
        ),
    ]
    assert filament_fake.items[1]["quantity"] == pytest.approx(449.75)
    assert report.usage.cursor_after == 4
    assert (await services.store.get(USAGE_NS, "1")).state is State.DONE
    assert await services.store.get_value(INTENT_NS, "1") is None  # tidied after the done-mark
    again = await usage(services)
    assert [line.outcome for line in again.usage.lines] == [] and len(filament_fake.writes) == 2
    filament_fake.use(5, 11, 1.0)
    third = await usage(services)
    assert [line.usage_id for line in third.usage.lines] == [5] and len(filament_fake.writes) == 3


async def test_dry_run_returns_the_exact_writes_and_writes_nothing(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    one_spool(filament_fake)
    filament_fake.use(1, 11, 30.0)
    filament_fake.use(2, 11, 12.5)
    services = filament_services()
    dry = await usage(services, dry=True)
    assert filament_fake.writes == []
    assert [line.outcome for line in dry.usage.lines] == [Outcome.PLANNED, Outcome.PLANNED]
    assert (
        await services.store.get(USAGE_NS, "1") is None
        and await services.store.get_cursor(USAGE_STREAM) is None
    )
    planned = [(w.method, w.path, w.body) for w in dry.writes]
    assert all(w.system == "inventree" for w in dry.writes)
    real = await usage(services)
    assert filament_fake.writes == planned == [(w.method, w.path, w.body) for w in real.writes]


async def test_default_is_a_dry_run(filament_fake: FakeFarm, filament_services: MakeServices) -> None:
    one_spool(filament_fake)
    filament_fake.use(1, 11, 30.0)
    report = await run_filament(filament_services(filament_dry_run=True), steps=["usage"])
    assert report.dry_run and filament_fake.writes == [] and len(report.writes) == 1


async def test_rows_without_a_spool_stay_pending_unclaimed_and_hold_the_cursor(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    one_spool(filament_fake)
    filament_fake.spool(12, tag_uid="EEFF")
    filament_fake.use(1, 12, 10.0)
    filament_fake.use(2, 11, 10.0)
    filament_fake.use(3, 99, 10.0)
    services = filament_services()
    report = await usage(services)
    lines = {line.usage_id: line for line in report.usage.lines}
    assert lines[1].outcome is Outcome.PENDING and "no InvenTree filament stock item" in (
        lines[1].reason or ""
    )
    assert lines[3].outcome is Outcome.PENDING and "not in Bambuddy" in (lines[3].reason or "")
    assert lines[2].outcome is Outcome.APPLIED
    assert await services.store.get(USAGE_NS, "1") is None  # waiting is not a failed attempt
    assert report.usage.cursor_after == 0 and report.ok
    for _ in range(6):  # many runs never park a waiting row
        await usage(services)
    filament_fake.item(2, "eeff", 100.0)
    later = await usage(services)
    assert {line.usage_id: line.outcome for line in later.usage.lines}[1] is Outcome.APPLIED
    assert later.usage.cursor_after == 2 and filament_fake.items[2]["quantity"] == 90.0


async def test_a_conflict_keeps_the_row_pending(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    one_spool(filament_fake)
    filament_fake.spool(12, tray_uuid="aabbccdd")
    filament_fake.use(1, 11, 10.0)
    report = await usage(filament_services())
    [line] = report.usage.lines
    assert line.outcome is Outcome.PENDING and (line.reason or "").startswith("conflict:")
    assert filament_fake.writes == [] and report.conflicts[0].spools == [11, 12]


async def test_over_the_maximum_is_refused_and_parked(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    one_spool(filament_fake, 5000.0)
    filament_fake.use(1, 11, 3500.0)
    filament_fake.use(2, 11, 10.0)
    services = filament_services()
    report = await usage(services)
    refused, applied = report.usage.lines
    assert refused.outcome is Outcome.PARKED and "FILAMENT_MAX_DEDUCTION_GRAMS" in (refused.error or "")
    assert applied.outcome is Outcome.APPLIED and len(filament_fake.writes) == 1
    assert report.usage.cursor_after == 2 and not report.ok
    assert (await services.store.get(USAGE_NS, "1")).state is State.PARKED


@pytest.mark.parametrize("limit,rows,warned", [(3, [10, 11, 12, 13, 14], True), (10, [5, 6], False)])
async def test_a_full_page_past_the_cursor_warns_of_missed_rows(
    filament_fake: FakeFarm, filament_services: MakeServices, limit: int, rows: list[int], warned: bool
) -> None:
    one_spool(filament_fake)
    for uid in rows:
        filament_fake.use(uid, 11, 1.0)
    report = await usage(filament_services(filament_usage_limit=limit), dry=True)
    assert bool(report.usage.warnings) is warned
    if warned:
        assert "FILAMENT_USAGE_LIMIT" in report.usage.warnings[0] and "1..11" in report.usage.warnings[0]


async def test_kilogram_stock_is_charged_in_kilograms(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    filament_fake.part(3, units="kg")
    filament_fake.item(1, "AABB", 0.8, part=3)
    filament_fake.spool(11, tag_uid="AABB")
    filament_fake.use(1, 11, 250.0)
    report = await usage(filament_services())
    assert filament_fake.writes[0][2]["items"] == [{"pk": 1, "quantity": "0.25"}]
    assert report.usage.lines[0].charged_grams == 250.0


async def test_a_depleting_row_removes_only_what_is_left_and_later_rows_finish(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    one_spool(filament_fake, 40.0)
    filament_fake.use(1, 11, 100.0)
    services = filament_services()
    first = await usage(services)
    [line] = first.usage.lines
    assert filament_fake.writes[0][2]["items"] == [{"pk": 1, "quantity": "40"}]
    assert line.outcome is Outcome.APPLIED and line.depleted and line.charged_grams == 40.0
    assert "60 g of the usage could not be subtracted" in (line.reason or "")
    assert 1 not in filament_fake.items  # InvenTree deleted the depleted item
    filament_fake.use(2, 11, 5.0)
    second = await usage(services)
    [later] = second.usage.lines
    assert later.outcome is Outcome.SKIPPED and later.depleted and later.charged_grams == 0.0
    assert second.usage.cursor_after == 2 and len(filament_fake.writes) == 1


@pytest.mark.parametrize("api", [425, 530])
@pytest.mark.parametrize("point", ["after_claim", "after_remove", "before_done"])
@pytest.mark.parametrize("grams", [30.0, 500.0])  # a partial removal, and one that depletes the item
async def test_a_crash_at_any_point_still_subtracts_exactly_once(
    filament_fake: FakeFarm,
    filament_services: MakeServices,
    tmp_path: Path,
    api: int,
    point: str,
    grams: float,
) -> None:
    filament_fake.api_version = api
    one_spool(filament_fake, 500.0)
    filament_fake.use(1, 11, grams)
    clock = ManualClock()
    store = SqliteStore(tmp_path / "crash.sqlite3", clock=clock)
    with pytest.raises(SimulatedCrash):
        await usage(filament_services(store=store), hook=crash_at(point))
    busy = await usage(filament_services(store=store))
    assert busy.usage.lines[0].outcome is Outcome.PENDING  # the lease is still live
    clock.advance(filament_services().settings.lease_seconds + 1)
    report = await usage(filament_services(store=store))
    [line] = report.usage.lines
    assert line.outcome in (Outcome.APPLIED, Outcome.UNCHANGED)
    assert line.recovered is (point != "after_claim")
    removals = [w for w in filament_fake.writes if w[1] == "/api/stock/remove/"]
    assert len(removals) == 1
    if grams < 500:
        assert filament_fake.items[1]["quantity"] == 470.0
    else:
        assert 1 not in filament_fake.items and line.depleted
    assert report.usage.cursor_after == 1
    assert (await filament_services(store=store).store.get(USAGE_NS, "1")).state is State.DONE


async def test_a_lease_lost_mid_row_is_left_to_the_run_that_took_it_over(
    filament_fake: FakeFarm, filament_services: MakeServices, tmp_path: Path
) -> None:
    one_spool(filament_fake)
    filament_fake.use(1, 11, 30.0)
    clock = ManualClock()
    store = SqliteStore(tmp_path / "lease.sqlite3", clock=clock)
    lease = filament_services().settings.lease_seconds

    def hook(where: str, key: str) -> None:
        if where == "before_done":  # a slow run: its lease runs out and another worker takes the row over
            clock.advance(lease + 1)
            assert store.claim(USAGE_NS, "1", lease_seconds=5).takeover

    slow = await usage(filament_services(store=store), hook=hook)
    [line] = slow.usage.lines
    assert line.outcome is Outcome.PENDING and line.reason == "taken over by another run"
    assert slow.usage.cursor_after == 0
    clock.advance(10)  # the other worker died too; the next run recovers from the stock history
    report = await usage(filament_services(store=store))
    [line] = report.usage.lines
    assert line.outcome is Outcome.UNCHANGED and line.recovered and len(filament_fake.removals(1)) == 1
    assert filament_fake.items[1]["quantity"] == 470.0


async def test_a_failed_row_holds_back_the_later_rows_of_its_spool(
    filament_fake: FakeFarm, filament_services: MakeServices, tmp_path: Path
) -> None:
    """A spool empties in the order it was used: with row 1 failing, row 2 must not take the last grams first."""
    filament_fake.api_version = 530  # the depleted item's history stays readable for the assertions
    one_spool(filament_fake, 40.0)
    filament_fake.use(1, 11, 30.0)
    filament_fake.use(2, 11, 30.0)
    filament_fake.fail_once[("POST", "/api/stock/remove/")] = 503  # row 1's removal
    clock = ManualClock()
    store = SqliteStore(tmp_path / "lanes.sqlite3", clock=clock)
    first = await usage(filament_services(store=store))
    assert [(line.usage_id, line.outcome) for line in first.usage.lines] == [
        (1, Outcome.FAILED),
        (2, Outcome.PENDING),
    ]
    assert "waits for usage row 1" in (first.usage.lines[1].reason or "")
    assert filament_fake.removals() == [] and first.usage.cursor_after == 0

    clock.advance(3600)
    second = await usage(filament_services(store=store))
    assert [(line.usage_id, line.outcome) for line in second.usage.lines] == [
        (1, Outcome.APPLIED),
        (2, Outcome.APPLIED),
    ]
    charged = [(r["notes"], r["deltas"]["removed"]) for r in filament_fake.removals()]
    assert charged == [("bambuddy:usage:1:", 30.0), ("bambuddy:usage:2:", 10.0)]  # row 2 takes what is left
