"""Hashes that outlive a run: a no-op re-sync of a large master folder reads no file contents (#17, target 2)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from farmsync.gcode.engine import MirrorOptions, run_mirror
from farmsync.gcode.local import DIGEST_CACHE_FILE, DigestCache, scan_local
from tests.fixtures.manifest import MemoryManifestStore
from tests.unit.gcode_fakes import T0, FakeFarm, FakePrinter, printer_config, write_tree

GO = MirrorOptions(dry_run=False)


def only_file(root: Path):
    (file,) = scan_local(root).files
    return file


def test_a_second_cache_on_the_same_file_reads_nothing(tmp_path: Path) -> None:
    write_tree(tmp_path / "m", {"a.gcode": "G1 X1\n" * 1000}, mtime=T0)
    cache_file = tmp_path / "data" / DIGEST_CACHE_FILE
    first = DigestCache(cache_file)
    digest = first(only_file(tmp_path / "m"), "sha256")
    assert first.reads == 1 and first.bytes_read == 6000
    first.save()
    second = DigestCache(cache_file)
    assert second(only_file(tmp_path / "m"), "sha256") == digest
    assert second(only_file(tmp_path / "m"), "sha1") == hashlib.sha1(b"G1 X1\n" * 1000).hexdigest()  # noqa: S324
    assert second.reads == 0 and second.bytes_read == 0


def test_an_edited_file_is_hashed_again(tmp_path: Path) -> None:
    master = tmp_path / "m"
    write_tree(master, {"a.gcode": "G1 old\n"}, mtime=T0)
    cache_file = tmp_path / DIGEST_CACHE_FILE
    cache = DigestCache(cache_file)
    cache(only_file(master), "sha256")
    cache.save()
    write_tree(master, {"a.gcode": "G1 new\n"}, mtime=T0 + 5)  # same size, new time
    again = DigestCache(cache_file)
    assert again(only_file(master), "sha256") == hashlib.sha256(b"G1 new\n").hexdigest()
    assert again.reads == 1


def test_a_replaced_file_with_the_same_size_and_time_is_hashed_again(tmp_path: Path) -> None:
    """A new file moved into place (a slicer's save, rsync) has a new inode even when size and mtime match."""
    master = tmp_path / "m"
    write_tree(master, {"a.gcode": "G1 old\n"}, mtime=T0)
    cache_file = tmp_path / DIGEST_CACHE_FILE
    cache = DigestCache(cache_file)
    cache(only_file(master), "sha256")
    cache.save()
    write_tree(tmp_path / "incoming", {"a.gcode": "G1 NEW\n"}, mtime=T0)
    os.replace(tmp_path / "incoming" / "a.gcode", master / "a.gcode")
    again = DigestCache(cache_file)
    assert again(only_file(master), "sha256") == hashlib.sha256(b"G1 NEW\n").hexdigest()
    assert again.reads == 1


def test_a_corrupt_or_foreign_cache_file_only_costs_a_rehash(tmp_path: Path) -> None:
    write_tree(tmp_path / "m", {"a.gcode": "G1\n"}, mtime=T0)
    for junk in ("{not json", json.dumps({"version": 1, "files": {"x": "y"}}), json.dumps([1, 2])):
        cache_file = tmp_path / DIGEST_CACHE_FILE
        cache_file.write_text(junk)
        cache = DigestCache(cache_file)
        assert cache(only_file(tmp_path / "m"), "sha256") == hashlib.sha256(b"G1\n").hexdigest()
        assert cache.reads == 1


def test_a_cache_that_cannot_be_written_does_not_fail_the_run(tmp_path: Path) -> None:
    write_tree(tmp_path / "m", {"a.gcode": "G1\n"}, mtime=T0)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    cache = DigestCache(blocker / DIGEST_CACHE_FILE)  # its parent is a file: every write fails
    cache(only_file(tmp_path / "m"), "sha256")
    cache.save()
    assert not (blocker / DIGEST_CACHE_FILE).exists()


def test_entries_of_deleted_files_are_dropped(tmp_path: Path) -> None:
    master = tmp_path / "m"
    write_tree(master, {"a.gcode": "A\n", "b.gcode": "B\n"}, mtime=T0)
    cache_file = tmp_path / DIGEST_CACHE_FILE
    cache = DigestCache(cache_file)
    for file in scan_local(master).files:
        cache(file, "sha256")
    (master / "b.gcode").unlink()
    cache.save()
    kept = json.loads(cache_file.read_text())["files"]
    assert list(kept) == [str((master / "a.gcode").resolve())]


async def test_a_no_op_resync_reads_no_file_contents(tmp_path: Path) -> None:
    master = tmp_path / "master"
    write_tree(master, {f"part{i:03}.gcode": f"G1 X{i}\n" * 200 for i in range(40)}, mtime=T0)
    farm = FakeFarm([FakePrinter("Ash"), FakePrinter("Birch")])
    configs = [printer_config("Ash", 8100), printer_config("Birch", 8101)]
    manifest = MemoryManifestStore()
    cache_file = tmp_path / "data" / DIGEST_CACHE_FILE
    first = DigestCache(cache_file)
    await run_mirror(configs, master, GO, farm.factory, manifest, digests=first)
    assert first.reads == 40  # each file read once for both printers
    again = DigestCache(cache_file)
    report = await run_mirror(configs, master, GO, farm.factory, manifest, digests=again)
    assert {a.op for p in report.printers for a in p.actions} == {"skip"}
    assert again.bytes_read == 0, "a no-op re-sync must not read the master folder's contents"
