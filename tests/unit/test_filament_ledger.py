"""InvenTree's history as the usage ledger: a lost store charges nothing twice, at one history read per item.

Also: depleted spools are shown as depleted (not missing), the grams of failed runs that are left out are
reported per spool, and spools run side by side while each spool's rows keep their order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from farmsync.filament.report import Outcome
from farmsync.filament.run import run_filament
from farmsync.filament.status import filament_status
from farmsync.services import Services
from tests.fixtures.filament import FakeFarm

MakeServices = Callable[..., Services]
TRACK = ("GET", "/api/stock/track/")


async def usage(services: Services, *, dry: bool = False, hook: Any = None) -> Any:
    return await run_filament(services, steps=["usage"], dry_run=dry, hook=hook)


def removals(farm: FakeFarm) -> list[Any]:
    return [w for w in farm.writes if w[1] == "/api/stock/remove/"]


def history_reads(farm: FakeFarm) -> int:
    return sum(1 for r in farm.requests if r == TRACK)


def two_spools(farm: FakeFarm, first: float = 500.0, second: float = 300.0) -> None:
    farm.part(2, name="PETG Blue")
    farm.item(1, "AA:BB", first)
    farm.spool(11, tag_uid="AABB", material="PLA", color_name="Black")
    farm.item(2, "CCDD", second, part=2)
    farm.spool(12, tag_uid="CCDD", material="PETG", color_name="Blue")


@pytest.mark.parametrize("api", [425, 530])
async def test_a_lost_store_subtracts_nothing_twice(
    filament_fake: FakeFarm, filament_services: MakeServices, api: int
) -> None:
    filament_fake.api_version = api
    two_spools(filament_fake)
    for uid in range(1, 13):
        filament_fake.use(uid, 11 if uid % 2 else 12, 5.0 + uid)
    first = await usage(filament_services())
    assert {line.outcome for line in first.usage.lines} == {Outcome.APPLIED}
    items, tracking = copy.deepcopy(filament_fake.items), len(filament_fake.tracking)
    filament_fake.writes.clear()

    wiped = filament_services()  # a fresh store: a new box, a lost data/ volume, a new Firestore prefix
    again = await usage(wiped)
    assert filament_fake.writes == [] and filament_fake.items == items
    assert len(filament_fake.tracking) == tracking
    assert all(line.outcome is Outcome.UNCHANGED and line.recovered for line in again.usage.lines)
    assert "InvenTree's stock history" in (again.usage.lines[0].reason or "")
    assert again.usage.cursor_after == 12 and again.ok

    dry = await usage(filament_services(), dry=True)  # the status page and dry runs plan nothing either
    assert dry.writes == [] and {line.outcome for line in dry.usage.lines} == {Outcome.UNCHANGED}


@pytest.mark.parametrize("api", [425, 530])
async def test_one_history_read_per_item_per_run_not_per_row(
    filament_fake: FakeFarm, filament_services: MakeServices, api: int
) -> None:
    filament_fake.api_version = api
    two_spools(filament_fake)
    filament_fake.item(3, "EEFF", 800.0)  # same part as item 1: on API ≥ 450 one part read covers both
    filament_fake.spool(13, tag_uid="EEFF")
    for uid in range(1, 31):
        filament_fake.use(uid, 11 + uid % 3, 2.0)
    scopes = 3 if api < 450 else 2
    await usage(filament_services())
    assert history_reads(filament_fake) == scopes
    filament_fake.requests.clear()
    report = await usage(filament_services())  # store lost: 30 rows to settle from the history
    assert history_reads(filament_fake) == scopes and report.usage.history_reads == scopes
    assert len(removals(filament_fake)) == 30  # all from the first run


@pytest.mark.parametrize("api", [425, 530])
async def test_a_spool_emptied_and_deleted_before_the_store_was_lost(
    filament_fake: FakeFarm, filament_services: MakeServices, api: int
) -> None:
    filament_fake.api_version = api
    two_spools(filament_fake, first=40.0)
    filament_fake.use(1, 11, 25.0)
    filament_fake.use(2, 12, 10.0)
    filament_fake.use(3, 11, 25.0)  # empties item 1 (only 15 g left): InvenTree deletes it
    filament_fake.use(4, 11, 5.0)  # nothing left to subtract
    filament_fake.use(5, 12, 10.0)
    first_services = filament_services()
    await usage(first_services)
    assert 1 not in filament_fake.items and filament_fake.items[2]["quantity"] == 280.0
    kept = await filament_status(first_services)  # the store remembers the spool ran out
    assert [v.spool_id for v in kept.depleted] == [11] and kept.missing_in_inventree == []
    assert "usage 3" in (kept.depleted[0].depleted or "")
    items, tracking = copy.deepcopy(filament_fake.items), len(filament_fake.tracking)
    filament_fake.writes.clear()

    wiped = filament_services()
    again = await usage(wiped)
    assert filament_fake.writes == [] and filament_fake.items == items
    assert len(filament_fake.tracking) == tracking
    outcomes = {line.usage_id: line.outcome for line in again.usage.lines}
    assert outcomes[2] is outcomes[5] is Outcome.UNCHANGED
    status = await filament_status(filament_services())
    if api >= 450:  # the history outlives the item: the spool's rows settle and it shows as depleted
        assert outcomes[1] is outcomes[3] is Outcome.UNCHANGED and outcomes[4] is Outcome.SKIPPED
        assert again.usage.cursor_after == 5
        assert [v.spool_id for v in status.depleted] == [11] and status.missing_in_inventree == []
        assert "usage 3" in (status.depleted[0].depleted or "")
        assert status.counts["depleted"] == 1 and status.counts["pending_usage"] == 0
    else:  # below 450 the history went with the item: its rows wait (never charged twice)
        assert outcomes[1] is outcomes[3] is outcomes[4] is Outcome.PENDING
        assert again.usage.cursor_after == 0


async def test_an_emptied_item_that_inventree_kept_shows_as_depleted(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    two_spools(filament_fake, first=0.0)  # emptied by hand; InvenTree kept the item (delete_on_deplete off)
    filament_fake.items[1]["delete_on_deplete"] = False
    status = await filament_status(filament_services())
    assert [v.spool_id for v in status.depleted] == [11] and status.missing_in_inventree == []
    assert "has nothing left" in (status.depleted[0].depleted or "")


async def test_grams_left_out_by_status_are_reported_per_spool(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    two_spools(filament_fake)
    filament_fake.use(1, 11, 30.0)
    filament_fake.use(2, 11, 4.5, status="failed")
    filament_fake.use(3, 11, 2.0, status="cancelled")
    filament_fake.use(4, 12, 1.5, status="aborted")
    filament_fake.use(5, 11, 1.5, status="failed")
    services = filament_services()
    dry = await usage(services, dry=True)
    left = [(e.spool_id, e.batch, e.grams, e.rows, e.statuses) for e in dry.usage.left_out]
    assert left == [
        (11, "AA:BB", 8.0, 3, {"failed": 2, "cancelled": 1}),
        (12, "CCDD", 1.5, 1, {"aborted": 1}),
    ]
    status = await filament_status(services)
    assert [(e.spool_id, e.grams) for e in status.usage_left_out] == [(11, 8.0), (12, 1.5)]
    assert "9.5 g" in (status.usage_left_out_note or "")
    assert "FILAMENT_USAGE_SUCCESS_STATUSES" in (status.usage_left_out_note or "")

    everything = filament_services(filament_usage_success_statuses="completed,failed,aborted,cancelled")
    applied = await usage(everything)
    assert applied.usage.left_out == [] and len(removals(filament_fake)) == 5
    assert filament_fake.items[1]["quantity"] == pytest.approx(500.0 - 38.0)


async def test_spools_run_side_by_side_and_each_spool_keeps_its_order(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    spool_of: dict[int, int] = {}
    for n in range(4):
        filament_fake.item(n + 1, f"AB{n}", 500.0)
        filament_fake.spool(11 + n, tag_uid=f"AB{n}")
    for uid in range(1, 21):
        spool_of[uid] = 11 + uid % 4
        filament_fake.use(uid, spool_of[uid], 1.0)
    busy: dict[int, int] = {}
    seen: dict[int, list[int]] = {}
    widest = 0

    def hook(where: str, key: str) -> None:
        nonlocal widest
        uid = int(key.split(":")[1])
        spool = spool_of[uid]
        if where == "after_claim":
            assert spool not in busy, f"rows {busy.get(spool)} and {uid} of one spool at once"
            busy[spool] = uid
            seen.setdefault(spool, []).append(uid)
            widest = max(widest, len(busy))
        elif where == "before_done":
            del busy[spool]

    report = await usage(filament_services(), hook=hook)
    assert widest > 1, "spools ran one after another"
    assert all(ids == sorted(ids) for ids in seen.values())
    assert [line.usage_id for line in report.usage.lines] == list(range(1, 21))
    assert report.usage.cursor_after == 20 and len(removals(filament_fake)) == 20


def test_markers_are_read_exactly() -> None:
    from farmsync.filament.ledger import marker, usage_id_of

    assert usage_id_of(marker(42)) == 42 and usage_id_of(" bambuddy:usage:4: ") == 4
    assert usage_id_of("bambuddy:usage:42") is None and usage_id_of("x bambuddy:usage:4:") is None
    assert usage_id_of(None) is None and usage_id_of("bambuddy:archive-4:") is None


async def test_a_spool_without_stock_costs_one_search_per_run_and_an_untagged_one_none(
    filament_fake: FakeFarm, filament_services: MakeServices
) -> None:
    filament_fake.spool(11, tag_uid="AABB")  # tagged, but InvenTree never had it
    filament_fake.spool(12)  # no tag at all: nothing to look for
    for uid in range(1, 7):
        filament_fake.use(uid, 11 + uid % 2, 3.0)
    services = filament_services()
    for _ in range(2):
        filament_fake.requests.clear()
        report = await usage(services)
        assert history_reads(filament_fake) == 1
        assert {line.outcome for line in report.usage.lines} == {Outcome.PENDING}
    assert filament_fake.writes == []
