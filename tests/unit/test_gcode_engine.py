"""The mirror engine against in-memory printers: parallelism, isolation of failures, gating, dry run, hooks."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os

import pytest

from farmsync.errors import InputError, UpstreamConflict, UpstreamTransportError
from farmsync.gcode.backends.base import Kind, PrinterBackend
from farmsync.gcode.config import select_printers
from farmsync.gcode.engine import MirrorListener, MirrorOptions, run_mirror
from farmsync.gcode.local import DigestCache
from farmsync.gcode.manifest import ManifestRecord
from farmsync.gcode.report import ActionResult, PrinterOutcome
from tests.unit.gcode_fakes import (
    T0,
    FakeBackend,
    FakeFarm,
    FakePrinter,
    MemoryManifestStore,
    ctx,
    printer_config,
    write_tree,
)

GO = MirrorOptions(dry_run=False)
DRY = MirrorOptions(dry_run=True)


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "master"
    write_tree(root, {"apple/pla.gcode": "G1 apple\n", "banana.bgcode": "G1 banana!\n"}, mtime=T0)
    return root


def farm_of(*names: str, **kwargs) -> tuple[FakeFarm, list]:
    farm = FakeFarm(FakePrinter(n, **kwargs) for n in names)
    configs = [printer_config(n, 8100 + i) for i, n in enumerate(names)]
    return farm, configs


def results(report, name):
    return [(a.op, a.path, a.result.value) for a in report.printer(name).actions]


async def test_uploads_missing_files_and_records_the_manifest(source):
    farm, configs = farm_of("Ash")
    manifest = MemoryManifestStore()
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    ash = report.printer("Ash")
    assert ash.status is PrinterOutcome.SYNCED and ash.kind == "prusalink" and ash.state == "IDLE"
    assert results(report, "Ash") == [("upload", "apple/pla.gcode", "ok"), ("upload", "banana.bgcode", "ok")]
    assert farm["Ash"].files["apple/pla.gcode"].data == b"G1 apple\n"
    assert all(a.seconds is not None for a in ash.actions)
    record = manifest.load("Ash")["apple/pla.gcode"]
    assert record.sha256 == hashlib.sha256(b"G1 apple\n").hexdigest() and record.size == 9
    assert record.mtime == farm["Ash"].files["apple/pla.gcode"].mtime
    assert farm["Ash"].closed
    assert report.exit_code == 0


async def test_second_run_is_a_no_op_thanks_to_the_manifest(source):
    farm, configs = farm_of("Ash")  # Buddy-like: the listing gives no sizes
    manifest = MemoryManifestStore()
    await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    for path in source.rglob("*.*"):
        os.utime(
            path, (T0 + 10**6, T0 + 10**6)
        )  # touched long after the upload: the mtime rule alone would re-upload
    farm["Ash"].calls.clear()
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert {a.op for a in report.printer("Ash").actions} == {"skip"}
    assert farm["Ash"].writes() == []


async def test_same_size_edit_with_old_mtime_is_caught_by_the_manifest(source):
    farm, configs = farm_of("Ash")
    manifest = MemoryManifestStore()
    await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    write_tree(source, {"banana.bgcode": "G1 BANANA!\n"}, mtime=T0 - 10**6)  # same size, older mtime
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert ("replace", "banana.bgcode", "ok") in results(report, "Ash")
    assert farm["Ash"].files["banana.bgcode"].data == b"G1 BANANA!\n"


async def test_printers_run_in_parallel_one_transfer_at_a_time_each(source):
    farm, configs = farm_of("A", "B", "C", "D", "E", upload_delay=0.2)
    report = await run_mirror(configs, source, GO, ctx(farm.factory))
    assert all(p.status is PrinterOutcome.SYNCED for p in report.printers)
    firsts = [farm[n].intervals[0] for n in "ABCDE"]
    assert max(start for _, start, _ in firsts) < min(end for _, _, end in firsts)  # all five overlap
    for name in "ABCDE":
        (_, _, end1), (_, start2, _) = farm[name].intervals
        assert end1 <= start2  # never two transfers at once on one printer


async def test_concurrency_caps_printers_at_once(source):
    farm, configs = farm_of("A", "B", "C", upload_delay=0.05)
    await run_mirror(configs, source, GO.model_copy(update={"concurrency": 1}), ctx(farm.factory))
    spans = sorted((farm[n].intervals[0][1], farm[n].intervals[-1][2]) for n in "ABC")
    assert all(prev_end <= next_start for (_, prev_end), (next_start, _) in itertools.pairwise(spans))


async def test_one_bad_printer_fails_only_itself(source):
    farm, configs = farm_of("Good", "Refused", "StatusDown", "OneFileFails")
    farm.unreachable.add("Refused")
    farm["StatusDown"].fail[("status", "")] = UpstreamTransportError(
        "StatusDown", "GET", "/api/v1/status", "timeout"
    )
    farm["OneFileFails"].fail[("upload", "apple/pla.gcode")] = UpstreamConflict(
        "OneFileFails", "PUT", "/api/v1/files/usb/apple/pla.gcode", "File is busy", status=409
    )
    report = await run_mirror(configs, source, GO, ctx(farm.factory))
    assert report.printer("Good").status is PrinterOutcome.SYNCED
    refused = report.printer("Refused")
    assert refused.status is PrinterOutcome.FAILED and "connection refused" in (refused.error or "")
    assert report.printer("StatusDown").status is PrinterOutcome.FAILED
    partial = report.printer("OneFileFails")
    assert partial.status is PrinterOutcome.FAILED and partial.error is None
    assert results(report, "OneFileFails") == [
        ("upload", "apple/pla.gcode", "failed"),
        ("upload", "banana.bgcode", "ok"),
    ]
    assert "File is busy" in (partial.actions[0].error or "")
    assert report.exit_code == 2


async def test_transport_failure_mid_run_stops_that_printer(source):
    farm, configs = farm_of("Ash")
    farm["Ash"].fail[("upload", "apple/pla.gcode")] = UpstreamTransportError("Ash", "PUT", "/x", "reset")
    report = await run_mirror(configs, source, GO, ctx(farm.factory))
    second = report.printer("Ash").actions[1]
    assert second.result is ActionResult.SKIPPED and "not attempted" in (second.error or "")
    assert [c for c in farm["Ash"].calls if c[0] == "upload"] == [("upload", "apple/pla.gcode")]


async def test_excluded_printers_are_never_constructed(source):
    farm, configs = farm_of("Ash", "Bishop", "Call")
    selection = select_printers(configs, exclude=["bishop"])
    report = await run_mirror(selection.selected, source, DRY, ctx(farm.factory), excluded=selection.excluded)
    assert farm.constructed == ["Ash", "Call"]
    assert farm["Bishop"].calls == []
    assert report.excluded == ["Bishop"]


async def test_busy_printer_is_deferred_and_not_listed(source):
    farm, configs = farm_of("Idle", "Printing")
    farm["Printing"].state = "PRINTING"
    report = await run_mirror(configs, source, GO, ctx(farm.factory))
    busy = report.printer("Printing")
    assert (busy.status, busy.state, busy.actions) == (PrinterOutcome.DEFERRED, "PRINTING", [])
    assert farm["Printing"].calls == [("status", "")]
    assert report.printer("Idle").status is PrinterOutcome.SYNCED
    assert report.exit_code == 0  # some deferred: fine


async def test_all_deferred_is_not_success(source):
    farm, configs = farm_of("A", "B", state="PRINTING")
    report = await run_mirror(configs, source, GO, ctx(farm.factory))
    assert {p.status for p in report.printers} == {PrinterOutcome.DEFERRED}
    assert report.exit_code == 2


async def test_ignore_state_syncs_busy_printers(source):
    farm, configs = farm_of("Printing", state="PRINTING")
    farm["Printing"].fail[("status", "")] = UpstreamConflict(
        "Printing", "GET", "/api/printer", "not connected"
    )
    options = GO.model_copy(update={"ignore_state": True})
    report = await run_mirror(configs, source, options, ctx(farm.factory))
    printing = report.printer("Printing")
    assert printing.status is PrinterOutcome.SYNCED and printing.state == "unknown"
    assert "--ignore-state" in printing.warnings[0]


async def test_dry_run_makes_no_writes(source):
    farm, configs = farm_of("Ash", "Bishop")
    farm["Ash"].add("old.gcode", "x")
    farm["Ash"].add("gone/old.gcode", "x")
    manifest = MemoryManifestStore()
    report = await run_mirror(configs, source, DRY, ctx(farm.factory, manifest))
    assert all(p.writes() == [] for p in farm.printers.values())
    assert manifest.load("Ash") == {}
    ash = report.printer("Ash")
    assert ash.status is PrinterOutcome.DRY_RUN
    assert results(report, "Ash") == [
        ("delete", "gone/old.gcode", "planned"),
        ("delete", "old.gcode", "planned"),
        ("delete_folder", "gone", "planned"),
        ("upload", "apple/pla.gcode", "planned"),
        ("upload", "banana.bgcode", "planned"),
    ]


async def test_deletes_extras_and_empty_folders_then_uploads(source):
    farm, configs = farm_of("Ash")
    farm["Ash"].add("old/deep/x.gcode", "x")
    farm["Ash"].add("old/notes.gcode", "x", read_only=True)
    farm["Ash"].add("stale/a.gcode", "x")
    report = await run_mirror(configs, source, GO, ctx(farm.factory))
    assert results(report, "Ash") == [
        ("delete", "old/deep/x.gcode", "ok"),
        ("delete", "stale/a.gcode", "ok"),
        ("delete_folder", "old/deep", "ok"),
        ("delete_folder", "stale", "ok"),
        ("upload", "apple/pla.gcode", "ok"),
        ("upload", "banana.bgcode", "ok"),
        ("skip", "old/notes.gcode", "skipped"),
    ]
    assert sorted(farm["Ash"].files) == ["apple/pla.gcode", "banana.bgcode", "old/notes.gcode"]
    assert farm["Ash"].dirs == {"apple", "old"}


async def test_folder_the_printer_refuses_to_delete_is_skipped_not_failed(source):
    farm, configs = farm_of("Ash")
    farm["Ash"].dirs.add("leftover")  # as Buddy: it may hold files the listing hides (.txt, .bbf)
    farm["Ash"].fail[("delete_folder", "leftover")] = UpstreamConflict(
        "Ash", "DELETE", "/leftover", "not empty"
    )
    report = await run_mirror(configs, source, GO, ctx(farm.factory))
    [folder] = [a for a in report.printer("Ash").actions if a.op == "delete_folder"]
    assert folder.result is ActionResult.SKIPPED and "kept the folder" in folder.reason
    assert report.printer("Ash").status is PrinterOutcome.SYNCED


async def test_destination_and_printer_destination(source):
    farm, configs = farm_of("Ash", "Bishop")
    configs[1] = printer_config("Bishop", 8102, destination="/usb/own")
    farm["Ash"].add("top.gcode", "an extra at the root; outside the destination once -d is given")
    report = await run_mirror(configs, source, DRY, ctx(farm.factory))
    assert results(report, "Ash") == [
        ("delete", "top.gcode", "planned"),
        ("upload", "apple/pla.gcode", "planned"),
        ("upload", "banana.bgcode", "planned"),
    ]
    assert [a.path for a in report.printer("Bishop").actions] == ["own/apple/pla.gcode", "own/banana.bgcode"]
    options = DRY.model_copy(update={"destination": "/usb/farm"})
    report = await run_mirror(configs, source, options, ctx(farm.factory))
    assert {p.destination for p in report.printers} == {"farm"}
    assert ("list_tree", "farm") in farm["Ash"].calls
    assert [a.path for a in report.printer("Ash").actions] == ["farm/apple/pla.gcode", "farm/banana.bgcode"]


class RecordingGuard:
    """A guard that refuses banana.bgcode and records what it was asked and told."""

    def __init__(self, *, done_raises: bool = False) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self.finished: list[tuple[str, str, str]] = []
        self.done_raises = done_raises

    async def allow(self, printer, action):
        self.seen.append((printer, action.path, action.sha256))
        return action.path != "banana.bgcode"

    async def done(self, printer, action, outcome):
        if self.done_raises:
            raise RuntimeError("store down")
        self.finished.append((printer, action.path, outcome.result.value))

    async def failed(self, printer, action, outcome):
        self.finished.append((printer, action.path, outcome.result.value))


async def test_guard_allows_and_hears_of_each_write(source):
    farm, configs = farm_of("Ash")
    guard = RecordingGuard()
    report = await run_mirror(configs, source, GO, ctx(farm.factory, guard=guard))
    apple = hashlib.sha256(b"G1 apple\n").hexdigest()
    assert guard.seen[0] == ("Ash", "apple/pla.gcode", apple)  # asked with the content hash known
    assert len(guard.seen) == 2
    assert guard.finished == [("Ash", "apple/pla.gcode", "ok")]
    banana = report.printer("Ash").actions[1]
    assert banana.result is ActionResult.SKIPPED and "guard" in banana.reason
    assert "banana.bgcode" not in farm["Ash"].files


async def test_failing_done_hook_is_a_warning(source):
    farm, configs = farm_of("Ash")
    report = await run_mirror(configs, source, GO, ctx(farm.factory, guard=RecordingGuard(done_raises=True)))
    ash = report.printer("Ash")
    assert ash.status is PrinterOutcome.SYNCED and "store down" in ash.warnings[0]


async def test_progress_events_and_single_hashing_across_printers(source):
    farm, configs = farm_of("A", "B", "C")

    class Recorder(MirrorListener):
        def __init__(self):
            self.bytes: dict[str, int] = {}
            self.finished: list[str] = []

        def progress(self, printer, action, nbytes):
            self.bytes[printer] = self.bytes.get(printer, 0) + nbytes

        def printer_finished(self, report):
            self.finished.append(report.name)

    recorder = Recorder()
    digests = DigestCache()
    await run_mirror(configs, source, GO, ctx(farm.factory, listener=recorder, digests=digests))
    assert recorder.bytes == {"A": 20, "B": 20, "C": 20}
    assert sorted(recorder.finished) == ["A", "B", "C"]
    assert digests.reads == 2  # two files, hashed once for three printers


async def test_octoprint_listing_compares_by_sha1(source):
    farm, configs = farm_of("Octo", listing="octoprint")
    configs = [printer_config("Octo", kind=Kind.OCTOPRINT, printer_type="OctoPrint", api_key="k")]
    farm["Octo"].add("apple/pla.gcode", "G1 apple\n", mtime=T0 - 10**6)  # older, but same content
    farm["Octo"].add("banana.bgcode", "G1 BANANA!\n", mtime=T0 + 10**6)  # newer, same size, other content
    report = await run_mirror(configs, source, GO, ctx(farm.factory))
    assert results(report, "Octo") == [
        ("replace", "banana.bgcode", "ok"),
        ("skip", "apple/pla.gcode", "skipped"),
    ]


async def test_manifest_records_of_vanished_files_are_forgotten(source):
    farm, configs = farm_of("Ash")
    manifest = MemoryManifestStore()
    manifest.save("Ash", "removed-by-hand.gcode", ManifestRecord(sha256="0" * 64, size=1))
    await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert "removed-by-hand.gcode" not in manifest.load("Ash")


async def test_empty_source_is_refused_before_contacting_printers(tmp_path):
    farm, configs = farm_of("Ash")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="allow-empty-source"):
        await run_mirror(configs, tmp_path / "empty", GO, ctx(farm.factory))
    assert farm.constructed == []
    options = GO.model_copy(update={"allow_empty_source": True})
    farm["Ash"].add("x.gcode", "x")
    report = await run_mirror(configs, tmp_path / "empty", options, ctx(farm.factory))
    assert results(report, "Ash") == [("delete", "x.gcode", "ok")]


async def test_bad_destination_is_refused(source):
    farm, configs = farm_of("Ash")
    with pytest.raises(InputError, match="destination"):
        await run_mirror(
            configs,
            source,
            DRY.model_copy(update={"destination": "/usb/../x"}),
            ctx(farm.factory),
        )
    assert farm.constructed == []


async def test_async_backend_factory_is_awaited(source):
    farm, configs = farm_of("Ash")

    async def factory(config):
        return farm.factory(config)

    report = await run_mirror(configs, source, DRY, ctx(factory))
    assert report.printer("Ash").status is PrinterOutcome.DRY_RUN


def test_options_normalise_suffixes():
    assert MirrorOptions(suffixes=("GCODE", "g")).suffixes == (".gcode", ".g")
    with pytest.raises(ValueError):
        MirrorOptions(suffixes=())
    with pytest.raises(ValueError, match="list of suffixes"):  # not a TypeError from deep in the validator
        MirrorOptions(suffixes=[".gcode", 3])


async def test_buddy_sizes_are_fetched_only_when_they_matter(source):
    farm, configs = farm_of("Ash")
    # Put there by someone else (no manifest), stamped after our source mtime: the mtime rule alone keeps it.
    farm["Ash"].add("banana.bgcode", "G1 a longer banana from elsewhere\n", mtime=T0 + 100)
    manifest = MemoryManifestStore()
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert ("stat", "banana.bgcode") in farm["Ash"].calls
    assert ("replace", "banana.bgcode", "ok") in results(report, "Ash")
    farm["Ash"].calls.clear()
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert [c for c in farm["Ash"].calls if c[0] == "stat"] == []  # the manifest covers our own uploads
    assert {a.op for a in report.printer("Ash").actions} == {"skip"}


async def test_entries_the_backend_left_out_become_warnings(source):
    farm, configs = farm_of("Ash")

    def factory(config):
        backend = farm.factory(config)
        backend.skipped = ["Ash: skipped remote entry '../x.gcode': has a '..' component"]
        return backend

    report = await run_mirror(configs, source, DRY, ctx(factory))
    assert report.printer("Ash").warnings == ["skipped remote entry '../x.gcode': has a '..' component"]


def test_fake_backend_honours_the_protocol():
    farm, configs = farm_of("Ash")
    assert isinstance(farm.factory(configs[0]), PrinterBackend)


async def test_a_broken_progress_display_does_not_fail_the_upload(source):
    farm, configs = farm_of("Ash")

    class Broken(MirrorListener):
        calls = 0

        def progress(self, printer, action, nbytes):
            Broken.calls += 1
            raise RuntimeError("display bug")

    report = await run_mirror(configs, source, GO, ctx(farm.factory, listener=Broken()))
    assert report.printer("Ash").status is PrinterOutcome.SYNCED and report.exit_code == 0
    assert Broken.calls == 1  # switched off after the first error


async def test_a_back_end_that_accepts_fewer_types_gets_only_those(source):
    farm, configs = farm_of("Ash", "Bambu")

    def factory(config):
        backend = farm.factory(config)
        if config.name == "Bambu":
            backend.accepts = (".gcode.3mf", ".3mf", ".gcode")  # no .bgcode on a Bambu printer
        return backend

    report = await run_mirror(configs, source, GO, ctx(factory))
    assert results(report, "Ash") == [("upload", "apple/pla.gcode", "ok"), ("upload", "banana.bgcode", "ok")]
    assert results(report, "Bambu") == [("upload", "apple/pla.gcode", "ok")]
    assert set(farm["Bambu"].files) == {"apple/pla.gcode"}


class PipelinedBackend(FakeBackend):
    """A back end that lets the engine keep two uploads under way (as Buddy's does). Each upload waits, after its
    transfer, until two have started: an engine that runs them one after the other never gets past the first."""

    upload_pipeline = 2

    def __init__(self, printer: FakePrinter, fail: dict[str, Exception] | None = None) -> None:
        super().__init__(printer)
        self.fail = fail or {}
        self.started: list[str] = []
        self.two_started = asyncio.Event()

    async def upload(self, path, source, **kwargs):  # type: ignore[no-untyped-def]
        self.started.append(path)
        if len(self.started) >= 2:
            self.two_started.set()
        await self.two_started.wait()
        if path in self.fail:
            raise self.fail[path]
        return await super().upload(path, source, **kwargs)


def _three_files(tmp_path):
    root = tmp_path / "three"
    write_tree(root, {"a.gcode": "G1 a\n", "b.gcode": "G1 b\n", "c.gcode": "G1 c\n"}, mtime=T0)
    return root


async def test_a_pipelined_back_end_starts_the_next_upload_while_one_is_verified(tmp_path):
    farm, configs = farm_of("Ash")
    backend = PipelinedBackend(farm["Ash"])
    manifest = MemoryManifestStore()
    report = await asyncio.wait_for(
        run_mirror(configs, _three_files(tmp_path), GO, ctx(lambda _: backend, manifest)), 10
    )
    assert sorted(backend.started[:2]) == ["a.gcode", "b.gcode"]  # one started while the other was under way
    assert results(report, "Ash") == [
        (op, p, "ok") for op, p in [("upload", "a.gcode"), ("upload", "b.gcode"), ("upload", "c.gcode")]
    ]
    assert set(manifest.load("Ash")) == {"a.gcode", "b.gcode", "c.gcode"}


async def test_a_transport_failure_in_the_pipeline_stops_the_uploads_not_yet_started(tmp_path):
    farm, configs = farm_of("Ash")
    broken = UpstreamTransportError("Ash", "PUT", "/a.gcode", "reset")
    backend = PipelinedBackend(farm["Ash"], fail={"a.gcode": broken})
    report = await asyncio.wait_for(
        run_mirror(configs, _three_files(tmp_path), GO, ctx(lambda _: backend)), 10
    )
    actions = report.printer("Ash").actions
    assert [(a.path, a.result) for a in actions] == [
        ("a.gcode", ActionResult.FAILED),
        ("b.gcode", ActionResult.OK),  # already under way when a failed: it finishes
        ("c.gcode", ActionResult.SKIPPED),
    ]
    assert "not attempted" in (actions[2].error or "") and "c.gcode" not in backend.started


# --- early replaces: a file changed since our last upload goes before the listing (Buddy) ----------------------


async def _synced_then_changed(source, **printer):
    """One Buddy-like printer synced once, then banana.bgcode changed in the source (same size, older mtime, so
    only the manifest can tell)."""
    farm, configs = farm_of("Ash", early_replace=True, **printer)
    manifest = MemoryManifestStore()
    await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    write_tree(source, {"banana.bgcode": "G1 BANANA!\n"}, mtime=T0 - 10**6)
    farm["Ash"].calls.clear()
    return farm, configs, manifest


async def test_a_changed_file_is_replaced_before_the_printer_is_listed(source):
    farm, configs, manifest = await _synced_then_changed(source)
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    calls = farm["Ash"].calls
    assert calls.index(("upload", "banana.bgcode")) < calls.index(("list_tree", ""))
    assert ("stat", "banana.bgcode") in calls and (
        "stat",
        "apple/pla.gcode",
    ) not in calls  # only the changed one
    assert results(report, "Ash") == [
        ("replace", "banana.bgcode", "ok"),
        ("skip", "apple/pla.gcode", "skipped"),
    ]  # once: the plan made after the listing leaves it alone
    assert [c for c in calls if c[0] == "upload"] == [("upload", "banana.bgcode")]
    assert farm["Ash"].files["banana.bgcode"].data == b"G1 BANANA!\n"
    assert manifest.load("Ash")["banana.bgcode"].sha256 == hashlib.sha256(b"G1 BANANA!\n").hexdigest()
    assert report.printer("Ash").status is PrinterOutcome.SYNCED


async def test_the_listing_runs_while_the_early_replace_is_on_the_wire(source):
    farm, configs, manifest = await _synced_then_changed(source, upload_delay=0.3)
    listed: list[float] = []
    original = FakeBackend.list_tree

    async def timed(self, root=""):
        listed.append(asyncio.get_running_loop().time())
        return await original(self, root)

    FakeBackend.list_tree = timed  # type: ignore[method-assign]
    try:
        started = asyncio.get_running_loop().time()
        await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    finally:
        FakeBackend.list_tree = original  # type: ignore[method-assign]
    assert listed[0] - started < 0.25  # during the 0.3 s transfer, not after it


async def test_no_early_replace_in_a_dry_run_or_without_a_record(source):
    farm, configs, manifest = await _synced_then_changed(source)
    report = await run_mirror(configs, source, DRY, ctx(farm.factory, manifest))
    assert [c for c in farm["Ash"].calls if c[0] in ("stat", "upload")] == []
    assert ("replace", "banana.bgcode", "planned") in results(report, "Ash")
    farm["Ash"].calls.clear()
    await run_mirror(configs, source, GO, ctx(farm.factory))  # a wiped store: no record, no early path
    ops = [op for op, _ in farm["Ash"].calls]
    assert ops[:2] == ["status", "list_tree"]  # then the plan's size stats (nothing vouches for either file)


async def test_a_read_only_or_foreign_printer_copy_is_left_to_the_plan(source):
    farm, configs, manifest = await _synced_then_changed(source)
    farm["Ash"].files["banana.bgcode"].read_only = True  # a transfer in progress
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert ("skip", "banana.bgcode", "skipped") in results(report, "Ash")
    farm["Ash"].files["banana.bgcode"].read_only = False
    farm["Ash"].add("banana.bgcode", "G1 theirs!\n", mtime=T0 + 10**6)  # replaced by hand since our upload
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert ("skip", "banana.bgcode", "skipped") in results(
        report, "Ash"
    )  # the mtime rule keeps the newer copy
    assert farm["Ash"].files["banana.bgcode"].data == b"G1 theirs!\n"


async def test_a_busy_printer_gets_no_early_replace(source):
    farm, configs, manifest = await _synced_then_changed(source)
    farm["Ash"].state = "PRINTING"
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert report.printer("Ash").status is PrinterOutcome.DEFERRED
    assert farm["Ash"].writes() == []


async def test_a_replace_the_drive_has_no_room_for_waits_for_the_plans_deletes(source):
    farm, configs, manifest = await _synced_then_changed(source)
    farm["Ash"].add("old.gcode", "G1 an old file taking the last free bytes\n")
    used = sum(len(f.data) for f in farm["Ash"].files.values())
    farm["Ash"].capacity = used + 5  # the new banana (11 bytes) fits only once old.gcode is gone
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert results(report, "Ash") == [
        ("delete", "old.gcode", "ok"),
        ("replace", "banana.bgcode", "ok"),
        ("skip", "apple/pla.gcode", "skipped"),
    ]
    assert [c for c in farm["Ash"].calls if c[0] == "upload"] == [("upload", "banana.bgcode")] * 2
    assert report.printer("Ash").status is PrinterOutcome.SYNCED and report.exit_code == 0


async def test_a_failed_listing_lets_the_early_replace_finish(source):
    farm, configs, manifest = await _synced_then_changed(source, upload_delay=0.2)
    farm["Ash"].fail[("list_tree", "")] = UpstreamTransportError("Ash", "GET", "/api/v1/files/usb", "reset")
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    ash = report.printer("Ash")
    assert ash.status is PrinterOutcome.FAILED and "reset" in (ash.error or "")
    assert results(report, "Ash") == [("replace", "banana.bgcode", "ok")]  # finished, not cut off
    assert farm["Ash"].files["banana.bgcode"].data == b"G1 BANANA!\n"
    assert manifest.load("Ash")["banana.bgcode"].size == 11


async def test_a_guard_refusing_the_early_replace_settles_it(source):
    farm, configs, manifest = await _synced_then_changed(source)
    guard = RecordingGuard()  # refuses banana.bgcode: written meanwhile by another run
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest, guard=guard))
    banana = next(a for a in report.printer("Ash").actions if a.path == "banana.bgcode")
    assert banana.result is ActionResult.SKIPPED
    assert [p for _, p, _ in guard.seen] == ["banana.bgcode"]  # asked once: the plan does not ask again
    assert farm["Ash"].writes() == []


async def test_progress_hears_the_early_replace_then_the_rest_of_the_plan(source):
    farm, configs, manifest = await _synced_then_changed(source)
    write_tree(source, {"cherry.gcode": "G1 cherry\n"})

    class Recorder(MirrorListener):
        def __init__(self):
            self.events: list[tuple[str, ...]] = []

        def printer_planned(self, printer, plan, *, dry_run):
            self.events.append(("planned", *(a.path for a in plan.writes())))

        def action_finished(self, printer, action, report):
            self.events.append(("finished", action.path))

    recorder = Recorder()
    await run_mirror(configs, source, GO, ctx(farm.factory, manifest, listener=recorder))
    assert recorder.events == [
        ("planned", "banana.bgcode"),
        ("finished", "banana.bgcode"),
        ("planned", "cherry.gcode"),
        ("finished", "cherry.gcode"),
    ]


@pytest.mark.parametrize("step", ["stat", "upload", "record", "list_tree"])
async def test_a_run_killed_at_any_step_of_an_early_replace_is_finished_by_the_next(source, step):
    farm, configs, manifest = await _synced_then_changed(source)
    new = b"G1 BANANA!\n"
    if step == "record":  # the printer has the new file, the store never heard of it
        saved = manifest.save

        def crash(*args):
            raise asyncio.CancelledError

        manifest.save = crash  # type: ignore[method-assign]
    else:
        farm["Ash"].fail[(step, "" if step == "list_tree" else "banana.bgcode")] = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    farm["Ash"].fail.clear()
    if step == "record":
        manifest.save = saved  # type: ignore[method-assign]
    farm["Ash"].calls.clear()
    report = await run_mirror(configs, source, GO, ctx(farm.factory, manifest))
    assert report.exit_code == 0
    assert farm["Ash"].files["banana.bgcode"].data == new
    uploads = [c for c in farm["Ash"].calls if c[0] == "upload"]
    if step in ("stat", "upload"):  # never sent: sent now, once
        assert uploads == [("upload", "banana.bgcode")]
        assert manifest.load("Ash")["banana.bgcode"].sha256 == hashlib.sha256(new).hexdigest()
    else:  # sent before the kill: the printer's copy (newer than the source) is kept, not sent again
        assert uploads == []
