"""A file changed since our last upload goes onto a Buddy printer before the printer's folders are walked (#17).

Buddy lists one folder per GET and gives no sizes, so on a farm the walk costs more than the changed file's head
start. The engine replaces such a file after one stat of it, while the listing runs beside the transfer; the plan
made from the listing leaves the file alone. These tests run the real back end against the fake Buddy printer and
read the printer's own request log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from farmsync.gcode.backends import backend_for
from farmsync.gcode.config import PrinterConfig, load_printers
from farmsync.gcode.engine import MirrorOptions, run_mirror
from farmsync.gcode.report import MirrorReport
from farmsync_sim.buddy import FakeBuddy
from tests.fixtures.printers_fake import FakeBuddyFactory
from tests.unit.gcode_fakes import MemoryManifestStore, ctx

GO = MirrorOptions(dry_run=False)
SIZE = 40_000  # bytes per file: 0.4 s on the wire at the printer's 100 kB/s
FOLDERS = ("alpha", "beta", "gamma")


def master(tmp_path: Path) -> Path:
    source = tmp_path / "master"
    for folder in FOLDERS:
        (source / folder).mkdir(parents=True)
        (source / folder / "part.gcode").write_bytes(folder[0].encode() * SIZE)
    return source


def printers(tmp_path: Path, printer: FakeBuddy) -> list[PrinterConfig]:
    config = tmp_path / "printers.yml"
    config.write_text(
        f"Ash:\n  printer_type: MK4\n  host: {printer.url}\n  username: maker\n  password: {printer.password}\n"
    )
    return load_printers(config)


def change(source: Path) -> None:
    """beta's file gets new content of the same size, dated in the past: only our manifest can tell."""
    path = source / "beta" / "part.gcode"
    path.write_bytes(b"B" * SIZE)
    os.utime(path, (1_000_000_000, 1_000_000_000))


def span(entry: dict[str, Any]) -> tuple[float, float]:
    """When the printer began and finished answering (its log has the end and the duration)."""
    return entry["ts"] - entry["ms"] / 1000, entry["ts"]


def actions(report: MirrorReport) -> list[tuple[str, str, str]]:
    return [(a.op, a.path, a.result.value) for a in report.printer("Ash").actions]


async def test_the_changed_file_is_on_the_wire_while_the_folders_are_listed(
    fake_buddy: FakeBuddyFactory, tmp_path: Path
) -> None:
    printer = fake_buddy(password="pw-ash", bandwidth=100_000)
    source, configs, manifest = master(tmp_path), printers(tmp_path, printer), MemoryManifestStore()
    assert (await run_mirror(configs, source, GO, ctx(backend_for, manifest))).exit_code == 0
    change(source)
    printer.clear_log()
    report = await run_mirror(configs, source, GO, ctx(backend_for, manifest))
    assert report.exit_code == 0
    assert actions(report) == [
        ("replace", "beta/part.gcode", "ok"),
        ("skip", "alpha/part.gcode", "skipped"),
        ("skip", "gamma/part.gcode", "skipped"),
    ]
    assert printer.files["beta/part.gcode"].read() == b"B" * SIZE
    log = printer.request_log
    puts = [e for e in log if e["method"] == "PUT"]
    assert len(puts) == 1 and puts[0]["status"] == 201  # once
    put_start, put_end = span(puts[0])
    files_api = [e for e in log if e["method"] == "GET" and e["path"].startswith("/api/v1/files/usb")]
    folders = [e for e in files_api if "." not in e["path"]]  # the file stat and verify name a .gcode
    assert len(folders) == 1 + len(FOLDERS)  # the storage root and each folder
    assert put_start < min(span(e)[0] for e in folders) < put_end  # listed beside the transfer, not after it

    printer.clear_log()
    again = await run_mirror(configs, source, GO, ctx(backend_for, manifest))
    assert {a.result.value for a in again.printer("Ash").actions} == {"skipped"}
    assert [e for e in printer.request_log if e["method"] == "PUT"] == []


async def test_a_full_drive_gets_the_plans_deletes_before_the_replace(
    fake_buddy: FakeBuddyFactory, tmp_path: Path
) -> None:
    printer = fake_buddy(password="pw-ash")
    source, configs, manifest = master(tmp_path), printers(tmp_path, printer), MemoryManifestStore()
    (source / "gamma" / "old.gcode").write_bytes(b"o" * SIZE)
    assert (await run_mirror(configs, source, GO, ctx(backend_for, manifest))).exit_code == 0
    (source / "gamma" / "old.gcode").unlink()  # gone from the master: the plan deletes it on the printer
    change(source)
    printer.capacity = 4 * SIZE  # full: a new copy of beta's file fits only once old.gcode is deleted
    printer.clear_log()
    report = await run_mirror(configs, source, GO, ctx(backend_for, manifest))
    assert report.exit_code == 0, report
    assert actions(report)[:2] == [
        ("delete", "gamma/old.gcode", "ok"),
        ("replace", "beta/part.gcode", "ok"),
    ]
    writes = [(e["method"], e["status"]) for e in printer.request_log if e["method"] in ("PUT", "DELETE")]
    assert writes == [("PUT", 507), ("DELETE", 204), ("PUT", 201)]  # tried early, then in the plan's order
    assert printer.files["beta/part.gcode"].read() == b"B" * SIZE and "gamma/old.gcode" not in printer.files
