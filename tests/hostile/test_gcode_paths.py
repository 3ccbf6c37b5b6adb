"""Printer listings with hostile names: ``..``, absolute paths, backslashes, NUL, control characters.

A printer is not trusted: whatever names its listing carries, a pull writes nothing outside the master folder and
a mirror deletes nothing outside its destination (nor anything it cannot name safely). The fake Buddy keeps a
virtual FAT tree, so it can hold such names; the fake Moonraker's flat list is extended with them here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farmsync.gcode.service import run_gcode
from farmsync.services import Services
from farmsync.store.sqlite import SqliteStore
from farmsync_sim.buddy import FakeBuddy
from farmsync_sim.fakehttp import Request, Response, as_json
from farmsync_sim.moonraker import FakeMoonraker
from tests.fixtures.farm import farm_settings
from tests.reliability.world import close_clients

EVIL_BUDDY = [
    "../escape.gcode",
    "../../etc/cron.d/evil.gcode",
    "dir/../../escape2.gcode",
    "back\\..\\..\\slash.gcode",
    "nul\x00byte.gcode",
    "bell\x07.gcode",
    "./dot.gcode",
]
EVIL_MOONRAKER = [
    "../moon-escape.gcode",
    "/abs-moon.gcode",
    "/etc/passwd.gcode",
    "a\\..\\..\\moon-slash.gcode",
    "moon\x00nul.gcode",
    "deep/../../../moon-deep.gcode",
]


class HostileMoonraker(FakeMoonraker):
    """A Moonraker whose file list also names files outside its root (a broken or malicious printer)."""

    def _list(self, request: Request) -> Response:
        answer = super()._list(request)
        import json

        body = json.loads(answer.body)  # type: ignore[arg-type]
        for name in EVIL_MOONRAKER:
            body["result"].append({"path": name, "modified": 1.0, "size": 10, "permissions": "rw"})
        return as_json(200, body)


def tree(root: Path, skip: tuple[Path, ...]) -> set[str]:
    """Every file under ``root`` (outside ``skip``), to show nothing new appeared anywhere."""
    found = set()
    for dirpath, dirnames, names in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        found |= {str(here / n) for n in names}
    return found


def write_printers(path: Path, buddy: FakeBuddy, moonraker: FakeMoonraker, destination: str = "") -> None:
    dest = f"  destination: {destination}\n" if destination else ""
    path.write_text(
        f"Evil:\n  printer_type: MK4\n  host: {buddy.url}\n  username: maker\n  password: {buddy.password}\n{dest}"
        f"Moon:\n  kind: moonraker\n  host: {moonraker.url}\n  api_key: {moonraker.api_key}\n{dest}",
        encoding="utf-8",
    )


def services_for(tmp_path: Path, printers_file: Path, master: Path, **overrides: Any) -> Services:
    settings = farm_settings(
        _NoFarm(),  # type: ignore[arg-type]
        tmp_path / "data",
        gcode_printers_file=printers_file,
        gcode_source_dir=master,
        gcode_dry_run=False,
        http_timeout_seconds=10.0,
        **overrides,
    )
    (tmp_path / "data").mkdir(exist_ok=True)
    return Services(settings, store=SqliteStore(tmp_path / "data" / "store.sqlite3"))


class _NoFarm:
    bambuddy_url = "http://127.0.0.1:9/api/v1"
    inventree_url = "http://127.0.0.1:9"
    api_key = "bb_unused-in-gcode-tests"
    token = "inv-unused-in-gcode-tests"
    ids: dict[str, Any] = {  # noqa: RUF012
        "INVENTREE_PART_CATEGORY_ID": 1,
        "INVENTREE_STOCK_LOCATION_ID": 2,
        "FILAMENT_PART_CATEGORY_ID": 3,
        "FILAMENT_STORAGE_LOCATION_ID": 4,
        "FILAMENT_LOADED_LOCATION_ID": 5,
        "FILAMENT_PRINTER_LOCATION_MAP": "",
    }


async def test_a_pull_never_writes_outside_the_master(
    tmp_path: Path, fake_buddy: Callable[..., FakeBuddy]
) -> None:
    buddy = fake_buddy(password="pw-evil-buddy-9876", name="Evil")
    for name in EVIL_BUDDY:
        buddy.add_file(name, b"G1 ; evil\n")
    buddy.add_file("fine/ok.gcode", b"G1 ; fine\n")
    moonraker = HostileMoonraker(api_key="moon-evil-key-5432", spool_dir=tmp_path / "moon")
    moonraker.start()
    moonraker.add_file("moon-ok.gcode", b"G1 ; moon fine\n")
    master = tmp_path / "area" / "master"
    master.mkdir(parents=True)
    printers_file = tmp_path / "printers.yml"
    write_printers(printers_file, buddy, moonraker)
    before = tree(tmp_path, skip=(master, buddy.spool, moonraker.spool, tmp_path / "data"))
    services = services_for(tmp_path, printers_file, master)
    try:
        report = await run_gcode(services, pull=True, dry_run=False)
    finally:
        await close_clients(services)
        services.sync_store.close()
        moonraker.stop()
    pulled = {str(p.relative_to(master)) for p in master.rglob("*") if p.is_file()}
    assert pulled == {"fine/ok.gcode", "moon-ok.gcode"}, pulled
    after = tree(tmp_path, skip=(master, buddy.spool, moonraker.spool, tmp_path / "data"))
    assert after - before == set(), f"written outside the master: {after - before}"
    assert not (tmp_path / "area" / "escape.gcode").exists() and not Path("/abs-moon.gcode").exists()
    results = {f.path: f.result.value for p in report.printers for f in p.files}
    assert results.get("fine/ok.gcode") == "pulled" and results.get("moon-ok.gcode") == "pulled", results


async def test_a_mirror_never_deletes_outside_its_destination(
    tmp_path: Path, fake_buddy: Callable[..., FakeBuddy]
) -> None:
    buddy = fake_buddy(password="pw-evil-buddy-9876", name="Evil")
    for name in EVIL_BUDDY:
        buddy.add_file(f"jobs/{name}", b"G1 ; evil\n")
    buddy.add_file("keep/outside.gcode", b"G1 ; not ours to delete\n")
    buddy.add_file("jobs/extra.gcode", b"G1 ; an extra inside the destination\n")
    moonraker = HostileMoonraker(api_key="moon-evil-key-5432", spool_dir=tmp_path / "moon")
    moonraker.start()
    moonraker.add_file("keep/outside.gcode", b"G1 ; not ours\n")
    master = tmp_path / "master"
    master.mkdir()
    (master / "part.gcode").write_bytes(b"G1 ; the master\n")
    printers_file = tmp_path / "printers.yml"
    write_printers(printers_file, buddy, moonraker, destination="jobs")
    services = services_for(tmp_path, printers_file, master)
    try:
        await run_gcode(services, dry_run=False)
    finally:
        await close_clients(services)
        services.sync_store.close()
    buddy_files = set(buddy.files)
    moon_files = set(moonraker.files)
    moon_log = list(moonraker.request_log)
    moonraker.stop()
    assert "keep/outside.gcode" in buddy_files and "keep/outside.gcode" in moon_files
    assert "jobs/part.gcode" in buddy_files and "jobs/extra.gcode" not in buddy_files
    deletes = [e["path"] for p in (buddy,) for e in p.request_log if e["method"] == "DELETE"] + [
        e["path"] for e in moon_log if e["method"] == "DELETE"
    ]
    for path in deletes:
        lowered = path.lower()
        assert "%2e%2e" not in lowered and "/../" not in lowered and "%5c" not in lowered, path
        assert "%00" not in lowered and "keep" not in lowered, path
