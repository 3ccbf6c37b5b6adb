"""Minimal tests for problems the reliability suites found in the library (see the hardening report).

Each fails while the problem is there; the suites themselves avoid the trigger so that they keep testing the rest.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from farmsync.gcode.service import run_gcode
from farmsync.prints import tick as ticks
from farmsync.prints.service import print_sync
from farmsync.services import Services
from farmsync.store.sqlite import SqliteStore
from farmsync_sim.moonraker import FakeMoonraker
from farmsync_sim.server import SimFarm
from tests.reliability.world import close_clients, settings_for


async def test_a_bgcode_file_on_moonraker_is_not_uploaded_again_and_again(
    sim_farm: SimFarm, fake_moonraker: FakeMoonraker, tmp_path: Path
) -> None:
    """.bgcode is a default GCODE_SUFFIX, but Moonraker's /server/files/list leaves it out (G-code extensions
    only), so the mirror never sees the copy it uploaded and uploads it on every run."""
    master = tmp_path / "master"
    master.mkdir()
    (master / "clip.bgcode").write_bytes(b"GCDE\x01\x00" * 100)
    printers = tmp_path / "printers.yml"
    printers.write_text(
        f"Klipper:\n  kind: moonraker\n  host: {fake_moonraker.url}\n  api_key: moonraker-key\n"
    )
    services = Services(
        settings_for(sim_farm, tmp_path / "data", printers_file=printers, master=master),
        store=SqliteStore(tmp_path / "store.sqlite3"),
    )
    try:
        first = await run_gcode(services, dry_run=False)
        assert first.exit_code == 0 and "clip.bgcode" in fake_moonraker.files
        second = await run_gcode(services, dry_run=False)
    finally:
        await close_clients(services)
        services.sync_store.close()
    again = [a.path for p in second.printers for a in p.actions if a.op in ("upload", "replace")]
    assert again == [], f"uploaded again on an unchanged farm: {again}"


async def test_a_backfill_on_an_emptied_store_makes_no_second_stock_item(
    sim_farm: SimFarm, tmp_path: Path
) -> None:
    settings = settings_for(sim_farm, tmp_path)
    for name in ("before.sqlite3", "after-data-loss.sqlite3"):
        services = Services(settings, store=SqliteStore(tmp_path / name))
        await ticks.backfill(print_sync(services))
        await close_clients(services)
        services.sync_store.close()
    batches = Counter(
        i["batch"]
        for i in sim_farm.inventree.state.stock_items.values()
        if str(i["batch"]).startswith("bambuddy-")
    )
    assert {b: n for b, n in batches.items() if n > 1} == {}
