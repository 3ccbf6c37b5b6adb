"""The per-printer upload manifest: both stores keep the same three-call contract."""

from __future__ import annotations

import json

import pytest

from farmsync.errors import StoreError
from farmsync.gcode.manifest import JsonManifestStore, ManifestRecord, ManifestStore
from tests.fixtures.manifest import MemoryManifestStore

RECORD = ManifestRecord(sha256="ab" * 32, size=10, mtime=1_800_000_000.0)


@pytest.fixture(params=["memory", "json"])
def store(request, tmp_path) -> ManifestStore:
    return MemoryManifestStore() if request.param == "memory" else JsonManifestStore(tmp_path / "manifest")


def test_contract(store):
    assert isinstance(store, ManifestStore)
    assert store.load("Ash") == {}
    store.save("Ash", "a/b.gcode", RECORD)
    store.save("Bishop", "c.gcode", RECORD)
    assert store.load("Ash") == {"a/b.gcode": RECORD}
    store.forget("Ash", "a/b.gcode")
    store.forget("Ash", "never.gcode")
    assert store.load("Ash") == {}
    assert store.load("Bishop") == {"c.gcode": RECORD}


def test_load_returns_a_copy(store):
    store.save("Ash", "a.gcode", RECORD)
    store.load("Ash").clear()
    assert store.load("Ash") == {"a.gcode": RECORD}


def test_json_store_persists_and_creates_nothing_until_saved(tmp_path):
    directory = tmp_path / "data" / "gcode-manifest"
    store = JsonManifestStore(directory)
    store.load("Ash")
    assert not directory.exists()
    store.save("Ash", "a.gcode", RECORD)
    again = JsonManifestStore(directory)
    assert again.load("Ash") == {"a.gcode": RECORD}
    assert [p.name for p in directory.iterdir()] == [store.file_for("Ash").name]


def test_json_store_keeps_odd_and_case_different_names_apart(tmp_path):
    store = JsonManifestStore(tmp_path)
    assert store.file_for("ash") != store.file_for("Ash")
    assert store.file_for("../../etc").parent == tmp_path
    store.save("../../etc", "x.gcode", RECORD)
    assert JsonManifestStore(tmp_path).load("../../etc") == {"x.gcode": RECORD}


def test_json_store_refuses_a_corrupt_file(tmp_path):
    store = JsonManifestStore(tmp_path)
    store.file_for("Ash").write_text("{not json")
    with pytest.raises(StoreError, match="cannot read"):
        store.load("Ash")
    store.file_for("Bishop").write_text(json.dumps({"files": {"a": {"size": -1}}}))
    with pytest.raises(StoreError, match="unexpected content"):
        JsonManifestStore(tmp_path).load("Bishop")
