"""``run_pull`` against in-memory printers: planning, conflicts, traversal rejection, safe placement."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from farmsync.clients.http import RetryPolicy
from farmsync.errors import UpstreamUnavailable, UpstreamValidation
from farmsync.gcode import pull as pull_module
from farmsync.gcode.backends.base import RemoteEntry
from farmsync.gcode.engine import MirrorOptions, run_mirror
from farmsync.gcode.manifest import ManifestRecord
from farmsync.gcode.pull import PART_SUFFIX, inside, place, run_pull, unsafe_name
from farmsync.gcode.pull_report import PullResult
from farmsync.gcode.report import PrinterOutcome
from tests.fixtures.manifest import MemoryManifestStore
from tests.unit.gcode_fakes import T0, FakeBackend, FakeFarm, FakePrinter, printer_config, write_tree

GO = MirrorOptions(dry_run=False)
DRY = MirrorOptions(dry_run=True)


@pytest.fixture
def master(tmp_path: Path) -> Path:
    root = tmp_path / "master"
    write_tree(root, {"kept/a.gcode": "G1 master a\n"}, mtime=T0)
    return root


def farm_of(*printers: FakePrinter) -> tuple[FakeFarm, list]:
    farm = FakeFarm(printers)
    return farm, [printer_config(p.name, 8100 + i) for i, p in enumerate(printers)]


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def result_of(report, printer: str, path: str):
    return next(f for f in report.printer(printer).files if f.path == path)


def downloads(printer: FakePrinter) -> list[str]:
    return [path for op, path in printer.calls if op == "download"]


async def test_printer_only_file_is_planned_in_a_dry_run_and_pulled_with_go(master):
    ash = FakePrinter("Ash")
    ash.add("kept/a.gcode", "G1 master a\n", mtime=T0)
    ash.add("sliced/here.gcode", "G1 sliced at the printer\n", mtime=T0 + 500)
    farm, configs = farm_of(ash)
    before = files_under(master)

    dry = await run_pull(configs, master, DRY, farm.factory)
    assert files_under(master) == before
    here = result_of(dry, "Ash", "sliced/here.gcode")
    assert (here.result, here.target, here.source) == (PullResult.PLANNED, "sliced/here.gcode", "Ash")
    assert here.size == len("G1 sliced at the printer\n")  # Buddy-like listing: the size came from stat
    assert dry.printer("Ash").status is PrinterOutcome.DRY_RUN and dry.exit_code == 0
    # the copy of a master file had to be compared (no hash, no manifest, equal size); the new one did not
    assert downloads(ash) == ["kept/a.gcode"]
    assert result_of(dry, "Ash", "kept/a.gcode").reason == "in the master already (sha256 matches)"

    manifest = MemoryManifestStore()
    report = await run_pull(configs, master, GO, farm.factory, manifest)
    assert result_of(report, "Ash", "sliced/here.gcode").result is PullResult.PULLED
    pulled = master / "sliced/here.gcode"
    assert pulled.read_bytes() == b"G1 sliced at the printer\n"
    assert pulled.stat().st_mtime == T0 + 500  # the printer's time, so the mirror sees nothing newer
    assert not list(master.rglob(f"*{PART_SUFFIX}"))
    assert report.printer("Ash").status is PrinterOutcome.SYNCED and report.exit_code == 0
    record = manifest.load("Ash")["sliced/here.gcode"]
    assert record.sha256 == hashlib.sha256(b"G1 sliced at the printer\n").hexdigest()
    assert ash.writes() == []  # a pull never writes to a printer


async def test_identical_copies_on_two_printers_are_pulled_once(master):
    ash, bishop = FakePrinter("Ash"), FakePrinter("Bishop")
    for printer in (ash, bishop):
        printer.add("x.gcode", "G1 same\n", mtime=T0 + 100)
    farm, configs = farm_of(ash, bishop)
    report = await run_pull(configs, master, GO, farm.factory)
    assert (master / "x.gcode").read_bytes() == b"G1 same\n"
    assert result_of(report, "Ash", "x.gcode").result is PullResult.PULLED
    twin = result_of(report, "Bishop", "x.gcode")
    assert twin.result is PullResult.SKIPPED and twin.source == "Ash" and "same content" in twin.reason
    # equal sizes and no hashes: each copy was downloaded once to compare, the winner's download was reused
    assert downloads(ash) == ["x.gcode"] and downloads(bishop) == ["x.gcode"]
    assert report.conflicts == [] and report.exit_code == 0


async def test_hashes_decide_without_downloading(master):
    ash, bishop = FakePrinter("Ash", listing="octoprint"), FakePrinter("Bishop", listing="octoprint")
    for printer in (ash, bishop):
        printer.add("x.gcode", "G1 same\n")
    farm, configs = farm_of(ash, bishop)
    report = await run_pull(configs, master, GO, farm.factory)
    assert result_of(report, "Ash", "x.gcode").result is PullResult.PULLED
    assert downloads(ash) == ["x.gcode"] and downloads(bishop) == []


async def test_different_sizes_on_two_printers_are_a_conflict_without_downloads(master):
    ash, bishop = FakePrinter("Ash"), FakePrinter("Bishop")
    ash.add("x.gcode", "G1 short\n", mtime=T0 + 10)
    bishop.add("x.gcode", "G1 rather longer\n", mtime=T0 + 20)
    farm, configs = farm_of(ash, bishop)
    before = files_under(master)
    report = await run_pull(configs, master, GO, farm.factory)
    assert files_under(master) == before
    assert downloads(ash) == downloads(bishop) == []
    assert [r.result for r in (result_of(report, n, "x.gcode") for n in ("Ash", "Bishop"))] == [
        PullResult.CONFLICT,
        PullResult.CONFLICT,
    ]
    (conflict,) = report.conflicts
    assert conflict.target == "x.gcode" and "different sizes" in conflict.reason
    assert [(c.where, c.size, c.mtime) for c in conflict.copies] == [
        ("Ash", 9, T0 + 10),
        ("Bishop", 17, T0 + 20),
    ]
    assert report.exit_code == 2


async def test_same_size_different_content_is_a_conflict_and_leaves_no_temp_files(master):
    ash, bishop = FakePrinter("Ash"), FakePrinter("Bishop")
    ash.add("new/x.gcode", "G1 AAAA\n")
    bishop.add("new/x.gcode", "G1 BBBB\n")
    farm, configs = farm_of(ash, bishop)
    before = files_under(master)
    report = await run_pull(configs, master, GO, farm.factory)
    assert files_under(master) == before
    assert not (master / "new").exists()  # the folder made for the comparison downloads is gone again
    (conflict,) = report.conflicts
    assert conflict.reason == "printers hold different files at this path"
    assert {c.sha256 for c in conflict.copies} == {
        hashlib.sha256(b"G1 AAAA\n").hexdigest(),
        hashlib.sha256(b"G1 BBBB\n").hexdigest(),
    }
    assert report.exit_code == 2


async def test_dry_run_comparison_downloads_stay_outside_the_master(master):
    ash, bishop = FakePrinter("Ash"), FakePrinter("Bishop")
    ash.add("x.gcode", "G1 AAAA\n")
    bishop.add("x.gcode", "G1 BBBB\n")
    farm, configs = farm_of(ash, bishop)
    before = sorted(p.as_posix() for p in master.rglob("*"))
    report = await run_pull(configs, master, DRY, farm.factory)
    assert sorted(p.as_posix() for p in master.rglob("*")) == before
    assert len(report.conflicts) == 1 and report.exit_code == 2


async def test_master_holding_a_different_file_is_a_conflict_listing_both_sides(master):
    ash = FakePrinter("Ash", listing="sizes")
    ash.add("kept/a.gcode", "G1 printer's own, longer version\n", mtime=T0 + 99)
    farm, configs = farm_of(ash)
    report = await run_pull(configs, master, GO, farm.factory)
    assert (master / "kept/a.gcode").read_bytes() == b"G1 master a\n"
    (conflict,) = report.conflicts
    assert conflict.reason == "the master holds a different file at this path"
    master_side, printer_side = conflict.copies
    assert (master_side.where, master_side.size, master_side.mtime) == ("master", 12, T0)
    assert (printer_side.where, printer_side.size, printer_side.mtime) == ("Ash", 33, T0 + 99)
    assert "differs from the master" in result_of(report, "Ash", "kept/a.gcode").reason
    assert report.exit_code == 2


async def test_master_copy_the_same_is_skipped(master):
    ash = FakePrinter("Ash")  # no sizes: stat, then equal sizes -> download and hash
    ash.add("kept/a.gcode", "G1 master a\n")
    bishop = FakePrinter("Bishop", listing="octoprint")
    bishop.add("kept/a.gcode", "G1 master a\n")
    farm, configs = farm_of(ash, bishop)
    report = await run_pull(configs, master, GO, farm.factory)
    assert result_of(report, "Ash", "kept/a.gcode").reason == "in the master already (sha256 matches)"
    assert result_of(report, "Bishop", "kept/a.gcode").reason == "in the master already (sha1 matches)"
    assert downloads(bishop) == [] and report.exit_code == 0
    assert not list(master.rglob(f"*{PART_SUFFIX}"))


async def test_printer_copy_farmsync_uploaded_before_the_master_changed_is_stale_not_a_conflict(master):
    ash = FakePrinter("Ash")
    ash.add("kept/a.gcode", "G1 old version\n", mtime=T0 + 7)
    manifest = MemoryManifestStore()
    old = hashlib.sha256(b"G1 old version\n").hexdigest()
    manifest.save("Ash", "kept/a.gcode", ManifestRecord(sha256=old, size=15, mtime=T0 + 7))
    farm, configs = farm_of(ash)
    report = await run_pull(configs, master, GO, farm.factory, manifest)
    file = result_of(report, "Ash", "kept/a.gcode")
    assert file.result is PullResult.SKIPPED and "the mirror replaces it" in file.reason
    assert report.conflicts == [] and report.exit_code == 0
    assert ash.calls.count(("stat", "kept/a.gcode")) == 0  # the manifest vouched: no stat, no download


@pytest.mark.parametrize(
    "name", ["../evil.gcode", "/etc/evil.gcode", "a/../../evil.gcode", "a\\..\\evil.gcode", "a/./b.gcode"]
)
def test_unsafe_printer_names_are_recognised(name):
    assert unsafe_name(name) is not None


class HostileBackend(FakeBackend):
    """A printer whose listing carries names no real back end should let through."""

    HOSTILE = ("../evil.gcode", "/tmp/evil.gcode", "ok/../../evil.gcode", "bad\x01name.gcode")

    async def list_tree(self, root: str = "") -> list[RemoteEntry]:
        entries = await super().list_tree(root)
        return [*entries, *(RemoteEntry(name, False, size=4) for name in self.HOSTILE)]


async def test_traversal_names_are_rejected_and_nothing_lands_outside_the_master(tmp_path, master):
    outside = tmp_path / "outside"
    outside.mkdir()
    (master / "link").symlink_to(outside, target_is_directory=True)
    ash = FakePrinter("Ash", listing="sizes")
    ash.add("link/escape.gcode", "G1 via a symlinked master folder\n")
    ash.add("fine.gcode", "G1 fine\n")
    for name in HostileBackend.HOSTILE:
        ash.files[name] = type(ash.files["fine.gcode"])(b"evil")
    farm, configs = farm_of(ash)
    farm.factory = lambda config: HostileBackend(ash)  # type: ignore[method-assign]
    before = sorted(p for p in tmp_path.rglob("*") if master not in p.parents and p != master)

    report = await run_pull(configs, master, GO, farm.factory)

    rejected = {f.path: f.reason for f in report.printer("Ash").files if f.result is PullResult.REJECTED}
    assert set(rejected) == {*HostileBackend.HOSTILE, "link/escape.gcode"}
    assert rejected["link/escape.gcode"] == "would land outside the master folder"
    assert all(
        reason.startswith("unsafe name") for path, reason in rejected.items() if path != "link/escape.gcode"
    )
    assert sorted(p for p in tmp_path.rglob("*") if master not in p.parents and p != master) == before
    assert list(outside.iterdir()) == []
    assert downloads(ash) == ["fine.gcode"]
    assert (master / "fine.gcode").read_bytes() == b"G1 fine\n"
    assert report.problems == [
        "source folder 'link' skipped: a link to outside the master folder (not followed, never uploaded)"
    ]
    assert (
        report.exit_code == 2
    )  # rejected names are listed and do not fail the run; the link out of the master does


async def test_destination_and_relative_to_map_printer_paths_into_the_source(tmp_path):
    root = tmp_path / "farm"
    source = root / "mk4"
    write_tree(source, {"a.gcode": "G1 a\n"})
    ash = FakePrinter("Ash", listing="sizes")
    ash.add("jobs/mk4/b.gcode", "G1 b\n")
    ash.add("jobs/other/c.gcode", "G1 outside the source's scope\n")
    farm, configs = farm_of(ash)
    options = MirrorOptions(dry_run=False, destination="/usb/jobs", relative_to=root)
    report = await run_pull(configs, source, options, farm.factory)
    assert (source / "b.gcode").read_bytes() == b"G1 b\n"
    assert result_of(report, "Ash", "jobs/mk4/b.gcode").target == "mk4/b.gcode"
    assert not (root / "other").exists()
    assert [f.path for f in report.printer("Ash").files] == ["jobs/mk4/b.gcode"]


async def test_other_types_read_only_and_busy_printers_are_left_alone(master):
    ash = FakePrinter("Ash", listing="sizes")
    ash.add("notes.txt", "text")
    ash.add("moving.gcode", "G1 in transfer\n", read_only=True)
    busy = FakePrinter("Busy", state="PRINTING", listing="sizes")
    busy.add("busy-only.gcode", "G1 busy\n")
    farm, configs = farm_of(ash, busy)
    report = await run_pull(configs, master, GO, farm.factory)
    assert result_of(report, "Ash", "notes.txt").reason == "not a mirrored file type"
    assert result_of(report, "Ash", "moving.gcode").reason == "read-only or transfer in progress"
    assert report.printer("Busy").status is PrinterOutcome.DEFERRED
    assert ("list_tree", "") not in busy.calls
    assert sorted(files_under(master)) == ["kept/a.gcode"]


class ShortBackend(FakeBackend):
    """Sends fewer bytes than the listing promised."""

    async def download(self, entry, dest, *, progress=None):
        self.printer._check("download", entry.path)
        Path(dest).write_bytes(self.printer.files[entry.path].data[:-3])
        return len(self.printer.files[entry.path].data) - 3


async def test_a_short_download_is_never_put_in_place(master):
    ash = FakePrinter("Ash", listing="sizes")
    ash.add("x.gcode", "G1 complete file\n")
    report = await run_pull(configs_of(ash), master, GO, lambda config: ShortBackend(ash))
    file = result_of(report, "Ash", "x.gcode")
    assert file.result is PullResult.FAILED and "not placed" in (file.error or "")
    assert not (master / "x.gcode").exists()
    assert not list(master.rglob(f"*{PART_SUFFIX}"))
    assert report.printer("Ash").status is PrinterOutcome.FAILED and report.exit_code == 2


async def test_downloads_are_retried_like_uploads(master, monkeypatch):
    monkeypatch.setattr(pull_module, "RETRY", RetryPolicy(attempts=3, base=0.0, cap=0.0))
    ash = FakePrinter("Ash", listing="sizes")
    ash.add("x.gcode", "G1 eventually\n")
    ash.fail[("download", "x.gcode")] = UpstreamUnavailable("Ash", "GET", "/usb/X.GCO", status=503)

    class Flaky(FakeBackend):
        async def download(self, entry, dest, *, progress=None):
            try:
                return await super().download(entry, dest, progress=progress)
            finally:
                ash.fail.clear()  # only the first attempt fails

    report = await run_pull(configs_of(ash), master, GO, lambda config: Flaky(ash))
    assert result_of(report, "Ash", "x.gcode").result is PullResult.PULLED
    assert downloads(ash) == ["x.gcode", "x.gcode"]


async def test_a_refused_download_is_not_retried(master, monkeypatch):
    monkeypatch.setattr(pull_module, "RETRY", RetryPolicy(attempts=3, base=0.0, cap=0.0))
    ash = FakePrinter("Ash", listing="sizes")
    ash.add("x.gcode", "G1 x\n")
    ash.fail[("download", "x.gcode")] = UpstreamValidation("Ash", "GET", "/usb/X.GCO", status=400)
    report = await run_pull(configs_of(ash), master, GO, lambda config: FakeBackend(ash))
    assert result_of(report, "Ash", "x.gcode").result is PullResult.FAILED
    assert downloads(ash) == ["x.gcode"]


def configs_of(*printers: FakePrinter) -> list:
    return [printer_config(p.name, 8100 + i) for i, p in enumerate(printers)]


def test_place_never_overwrites(tmp_path):
    temp, target = tmp_path / "t.part", tmp_path / "x.gcode"
    temp.write_bytes(b"new")
    target.write_bytes(b"old")
    assert place(temp, target) is False
    assert target.read_bytes() == b"old" and temp.exists()
    target.unlink()
    assert place(temp, target) is True
    assert target.read_bytes() == b"new" and not temp.exists()


def test_inside(tmp_path):
    (tmp_path / "m").mkdir()
    root = (tmp_path / "m").resolve()
    assert inside(root / "a/b.gcode", root)
    assert not inside(root / "../x.gcode", root)
    assert not inside(root, root)


async def test_after_a_pull_the_mirror_spreads_the_file_without_re_uploading_it(master):
    ash, bishop = FakePrinter("Ash"), FakePrinter("Bishop")
    ash.add("sliced.gcode", "G1 from Ash\n", mtime=T0 + 1000)
    for printer in (ash, bishop):
        printer.add("kept/a.gcode", "G1 master a\n", mtime=T0 + 2000)
    farm, configs = farm_of(ash, bishop)
    manifest = MemoryManifestStore()
    assert (await run_pull(configs, master, GO, farm.factory, manifest)).exit_code == 0
    mirror = await run_mirror(configs, master, GO, farm.factory, manifest)
    uploads = {p.name: [a.path for a in p.actions if a.op == "upload"] for p in mirror.printers}
    assert uploads == {"Ash": [], "Bishop": ["sliced.gcode"]}
    assert os.path.exists(master / "sliced.gcode")
