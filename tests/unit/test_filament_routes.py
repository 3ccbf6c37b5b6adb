"""Filament route handlers: tracking off is a 409, ``?dry_run=`` is honoured, toggles apply to sync_all/tick."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from farmsync.errors import ConfigError, InputError
from farmsync.services import Services, set_services
from farmsync.web.handlers import filament as routes
from tests.fixtures.filament import FakeFarm
from tests.fixtures.filament import make_call as call

MakeServices = Callable[..., Services]


@pytest.fixture
def install() -> Iterator[Callable[[Services], None]]:
    yield set_services
    set_services(None)


@pytest.mark.parametrize(
    "handler", ["status", "sync_all", "sync_spools", "sync_locations", "sync_usage", "tick"]
)
async def test_tracking_off_answers_409(
    filament_fake: FakeFarm, filament_services: MakeServices, install: Any, handler: str
) -> None:
    install(filament_services(filament_tracking_enabled=False))
    with pytest.raises(InputError) as raised:
        await getattr(routes, handler)(call())
    assert raised.value.status_code == 409 and "FILAMENT_TRACKING_ENABLED" in str(raised.value)
    assert filament_fake.requests == []


async def test_missing_settings_are_a_config_error(filament_services: MakeServices, install: Any) -> None:
    install(filament_services(filament_part_category_id=None))
    with pytest.raises(ConfigError, match="FILAMENT_PART_CATEGORY_ID"):
        await routes.sync_all(call())


async def test_dry_run_query_overrides_the_setting(
    filament_fake: FakeFarm, filament_services: MakeServices, install: Any
) -> None:
    filament_fake.item(1, "AABB", 500.0)
    install(filament_services(filament_dry_run=False))
    planned = await routes.sync_spools(call("dry_run=true"))
    assert planned["dry_run"] is True and len(planned["writes"]) == 1 and filament_fake.writes == []
    with pytest.raises(InputError) as raised:
        await routes.sync_spools(call("dry_run=maybe"))
    assert raised.value.status_code == 422
    done = await routes.sync_spools(call())
    assert done["dry_run"] is False and done["ok"] and len(filament_fake.writes) == 1


async def test_tick_ignores_its_body_and_honours_the_step_toggles(
    filament_fake: FakeFarm, filament_services: MakeServices, install: Any
) -> None:
    filament_fake.item(1, "AABB", 500.0)
    filament_fake.spool(11, tag_uid="AABB")
    filament_fake.use(1, 11, 10.0)
    install(filament_services(filament_sync_usage=False, filament_sync_spools=False))
    report = await routes.tick(call(body=b'{"specversion": "1.0", "type": "google.cloud.scheduler"}'))
    assert report["steps"] == ["locations"] and report["trigger"] == "tick"
    assert filament_fake.writes == []
    single = await routes.sync_usage(call())
    assert single["steps"] == ["usage"] and len(filament_fake.writes) == 1


async def test_status_lists_matches_pending_usage_and_what_is_loaded(
    filament_fake: FakeFarm, filament_services: MakeServices, install: Any
) -> None:
    filament_fake.item(1, "AABB", 500.0, location=21)
    filament_fake.item(2, "CCDD", 1000.0)
    filament_fake.spool(11, tag_uid="AABB", weight_used=520.0, material="PETG")
    filament_fake.spool(12, tag_uid="EEFF")
    filament_fake.assign(11, "B1-X1")
    filament_fake.use(1, 11, 10.0)
    filament_fake.use(2, 12, 10.0)
    install(filament_services())
    status = await routes.status(call())
    assert status["counts"] == {
        "matched": 1,
        "missing_in_bambuddy": 1,
        "missing_in_inventree": 1,
        "depleted": 0,
        "conflicts": 0,
        "pending_usage": 2,
        "parked_usage": 0,
        "loaded": 1,
    }
    [matched] = status["matched"]
    assert (matched["inventree_grams"], matched["bambuddy_remaining_grams"], matched["drift_grams"]) == (
        500.0,
        480.0,
        20.0,
    )
    assert [(p["usage_id"], p["outcome"]) for p in status["pending_usage"]] == [
        (1, "planned"),
        (2, "pending"),
    ]
    [slot] = status["loaded"]
    assert (slot["printer"], slot["grams_left"], slot["grams_source"], slot["target_location"]) == (
        "B1-X1",
        500.0,
        "inventree",
        21,
    )
    assert filament_fake.writes == []
