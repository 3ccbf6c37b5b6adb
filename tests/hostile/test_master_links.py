"""Symbolic links in the master folder: nothing outside the master is ever read, uploaded or written through.

``ln -s ../.env master/env.gcode`` once put the ``.env`` (tokens included) on every printer: the suffix filter read
the link's name. The rule now (README, *Links in the master folder*): a file link whose real path lies inside the
master is mirrored as a regular file under the link's name; links to folders are never followed; anything whose
real path lies outside the master is skipped and reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from farmsync.gcode.local import scan_local
from farmsync.gcode.service import run_gcode
from farmsync_sim.buddy import FakeBuddy
from farmsync_sim.moonraker import FakeMoonraker
from tests.hostile.test_gcode_paths import services_for, write_printers
from tests.reliability.world import close_clients

SECRET_ENV = b"SERVICE_API_TOKEN=tok-from-the-env-file-2468\n"
OUTSIDE_GCODE = b"G1 ; a file beside the master, not in it\n"


def linked_master(tmp_path: Path) -> tuple[Path, Path]:
    """A master with every kind of link, and the folder beside it that the outside links point into."""
    outside = tmp_path / "beside"
    outside.mkdir()
    (outside / ".env").write_bytes(SECRET_ENV)
    (outside / "x.gcode").write_bytes(OUTSIDE_GCODE)
    master = tmp_path / "master"
    (master / "sub").mkdir(parents=True)
    (master / "part.gcode").write_bytes(b"G1 ; part\n")
    (master / "sub" / "deep.gcode").write_bytes(b"G1 ; deep\n")
    os.symlink("../beside/.env", master / "env.gcode")  # relative, like the report's ln -s
    os.symlink(outside / "x.gcode", master / "abs.gcode")  # absolute
    os.symlink("../../beside/x.gcode", master / "sub" / "up.gcode")  # out again from a subfolder
    os.symlink("../beside", master / "outdir")  # a folder outside
    os.symlink("part.gcode", master / "alias.gcode")  # a file inside: mirrored under its own name
    os.symlink("sub", master / "inner")  # a folder inside: not followed
    os.symlink("missing.gcode", master / "dangling.gcode")
    return master, outside


def test_the_scan_skips_and_reports_every_link_out_of_the_master(tmp_path: Path) -> None:
    master, outside = linked_master(tmp_path)
    tree = scan_local(master)
    assert {f.rel for f in tree.files} == {"part.gcode", "alias.gcode", "sub/deep.gcode"}
    assert all(f.abspath.resolve().is_relative_to(master.resolve()) for f in tree.files)
    alias = next(f for f in tree.files if f.rel == "alias.gcode")
    assert alias.abspath == (master / "part.gcode").resolve()  # read from the real file, not the link
    text = "\n".join(tree.problems)
    for name in ("env.gcode", "abs.gcode", "sub/up.gcode", "outdir"):
        assert f"{name!r} skipped: a link to outside the master folder" in text, text
    assert "inner" not in text and "dangling.gcode" in text, (
        text
    )  # a folder link inside: quietly not followed
    assert str(outside) not in text  # where a link points is not echoed into reports


def test_a_master_reached_through_a_link_is_still_scanned(tmp_path: Path) -> None:
    master, _ = linked_master(tmp_path)
    os.symlink(master, tmp_path / "via")
    assert {f.rel for f in scan_local(tmp_path / "via").files} == {
        "part.gcode",
        "alias.gcode",
        "sub/deep.gcode",
    }


async def test_a_mirror_uploads_nothing_from_outside_the_master(
    tmp_path: Path, fake_buddy: Callable[..., FakeBuddy]
) -> None:
    master, _ = linked_master(tmp_path)
    buddy = fake_buddy(password="pw-link-buddy-1357", name="Linky")
    moonraker = FakeMoonraker(api_key="moon-link-key-8642", spool_dir=tmp_path / "moon")
    moonraker.start()
    printers_file = tmp_path / "printers.yml"
    write_printers(printers_file, buddy, moonraker)
    services = services_for(tmp_path, printers_file, master)
    try:
        report = await run_gcode(services, dry_run=False)
        moon_files = {path: f.read() for path, f in moonraker.files.items()}
    finally:
        await close_clients(services)
        services.sync_store.close()
        moonraker.stop()
    buddy_files = {path: f.read() for path, f in buddy.files.items()}
    for files in (buddy_files, moon_files):
        assert set(files) == {"part.gcode", "alias.gcode", "sub/deep.gcode"}, set(files)
        assert files["alias.gcode"] == b"G1 ; part\n"
        assert all(SECRET_ENV not in data and OUTSIDE_GCODE not in data for data in files.values())
    assert any("'env.gcode' skipped: a link to outside" in p for p in report.problems), report.problems


async def test_a_pull_neither_reads_nor_writes_through_a_link_out_of_the_master(
    tmp_path: Path, fake_buddy: Callable[..., FakeBuddy]
) -> None:
    master, outside = linked_master(tmp_path)
    buddy = fake_buddy(password="pw-link-buddy-1357", name="Linky")
    buddy.add_file("env.gcode", b"G1 ; the printer's env.gcode\n")
    buddy.add_file("outdir/x.gcode", b"G1 ; would overwrite the file beside the master\n")
    buddy.add_file("outdir/new.gcode", b"G1 ; would land beside the master\n")
    moonraker = FakeMoonraker(api_key="moon-link-key-8642", spool_dir=tmp_path / "moon")
    moonraker.start()
    printers_file = tmp_path / "printers.yml"
    write_printers(printers_file, buddy, moonraker)
    services = services_for(tmp_path, printers_file, master)
    try:
        report = await run_gcode(services, pull=True, dry_run=False)
    finally:
        await close_clients(services)
        services.sync_store.close()
        moonraker.stop()
    assert (outside / ".env").read_bytes() == SECRET_ENV
    assert (outside / "x.gcode").read_bytes() == OUTSIDE_GCODE
    assert sorted(p.name for p in outside.iterdir()) == [".env", "x.gcode"]
    assert (master / "env.gcode").is_symlink() and (master / "outdir").is_symlink()
    assert any("'env.gcode' skipped: a link to outside" in p for p in report.problems), report.problems
    shown = report.model_dump_json()
    assert "tok-from-the-env-file" not in shown
