"""Scanning the master folder and hashing its files once per run."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from farmsync.errors import InputError
from farmsync.gcode.local import DigestCache, scan_local
from tests.unit.gcode_fakes import write_tree


def test_scan_filters_suffixes_case_insensitively_and_skips_hidden(tmp_path):
    write_tree(
        tmp_path,
        {
            "a.gcode": "1",
            "B.GCODE": "22",
            "c.BGCode": "333",
            "d.g": "4",
            "e.gco": "5",
            "notes.txt": "x",
            ".hidden.gcode": "x",
            ".git/x.gcode": "x",
            "sub/.cache/y.gcode": "x",
            "sub/deep/f.gcode": "666666",
        },
    )
    tree = scan_local(tmp_path)
    assert [f.rel for f in tree.files] == [
        "B.GCODE",
        "a.gcode",
        "c.BGCode",
        "d.g",
        "e.gco",
        "sub/deep/f.gcode",
    ]
    assert tree.base == ""
    assert tree.problems == ()
    deep = tree.files[-1]
    assert deep.size == 6 and deep.abspath == (tmp_path / "sub/deep/f.gcode").resolve()


def test_scan_with_custom_suffixes(tmp_path):
    write_tree(tmp_path, {"a.gcode": "1", "b.bbf": "2"})
    assert [f.rel for f in scan_local(tmp_path, suffixes=(".bbf",)).files] == ["b.bbf"]


def test_scan_relative_to_parent(tmp_path):
    write_tree(tmp_path, {"usb/apple/pla/a.gcode": "1", "usb/banana/b.gcode": "2"})
    tree = scan_local(tmp_path / "usb/apple", relative_to=tmp_path / "usb")
    assert tree.base == "apple"
    assert [f.rel for f in tree.files] == ["apple/pla/a.gcode"]


def test_scan_relative_to_must_be_a_parent(tmp_path):
    write_tree(tmp_path, {"a/x.gcode": "1", "b/y.gcode": "2"})
    with pytest.raises(InputError, match="not a parent"):
        scan_local(tmp_path / "a", relative_to=tmp_path / "b")


def test_scan_missing_source(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        scan_local(tmp_path / "nope")


def test_scan_reports_unsafe_names_instead_of_crashing(tmp_path):
    write_tree(tmp_path, {"ok.gcode": "1", "back\\slash.gcode": "2"})
    tree = scan_local(tmp_path)
    assert [f.rel for f in tree.files] == ["ok.gcode"]
    assert len(tree.problems) == 1 and "backslash" in tree.problems[0]


def test_scan_follows_file_links_inside_the_master_only(tmp_path):
    write_tree(tmp_path, {"src/real.gcode": "1", "outside/o.gcode": "2"})
    os.symlink(tmp_path / "src/real.gcode", tmp_path / "src/link.gcode")
    os.symlink(tmp_path / "outside/o.gcode", tmp_path / "src/out.gcode")
    os.symlink(tmp_path / "outside", tmp_path / "src/linkdir")
    tree = scan_local(tmp_path / "src")
    assert [f.rel for f in tree.files] == ["link.gcode", "real.gcode"]
    assert len(tree.problems) == 2  # out.gcode and linkdir (tests/hostile/test_master_links.py has the rest)


def test_digest_cache_hashes_each_file_once_for_both_algorithms(tmp_path):
    write_tree(tmp_path, {"a.gcode": "G1 X1\n"})
    [file] = scan_local(tmp_path).files
    cache = DigestCache()
    assert cache(file, "sha256") == hashlib.sha256(b"G1 X1\n").hexdigest()
    assert cache(file, "sha1") == hashlib.sha1(b"G1 X1\n").hexdigest()  # noqa: S324
    assert cache.reads == 1
    assert cache(file, "md5") == hashlib.md5(b"G1 X1\n").hexdigest()  # noqa: S324
    assert cache.reads == 2


def test_digest_cache_rehashes_an_edited_file(tmp_path):
    write_tree(tmp_path, {"a.gcode": "one"})
    cache = DigestCache()
    first = cache(scan_local(tmp_path).files[0], "sha256")
    write_tree(tmp_path, {"a.gcode": "two!"})
    second = cache(scan_local(tmp_path).files[0], "sha256")
    assert first != second and cache.reads == 2


def test_digest_cache_is_shared_safely_between_threads(tmp_path):
    write_tree(tmp_path, {"a.gcode": "x" * 3_000_000})
    [file] = scan_local(tmp_path).files
    cache = DigestCache()
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache(file, "sha256"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and cache.reads == 1


def test_digest_cache_rejects_unknown_algorithm(tmp_path):
    write_tree(tmp_path, {"a.gcode": "1"})
    with pytest.raises(ValueError):
        DigestCache()(scan_local(Path(tmp_path)).files[0], "crc32")
