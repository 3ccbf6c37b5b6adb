"""The old upload manifest (JSON files under DATA_DIR/gcode-manifest) is read once into the store."""

from __future__ import annotations

from datetime import UTC, datetime

from farmsync.gcode.manifest import ManifestRecord
from farmsync.gcode.old_manifest import import_old_manifests, read_old_manifest
from farmsync.gcode.store_manifest import StoreManifestStore
from farmsync.store.sqlite import SqliteStore
from tests.unit.gcode_fakes import write_old_manifest

AT = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
RECORD = ManifestRecord(sha256="ab" * 32, size=10, mtime=1_800_000_000.0, uploaded_at=AT)


def test_read_old_manifest_gives_printer_and_records(tmp_path):
    file = write_old_manifest(tmp_path, "Ash / left", {"a/b.gcode": RECORD})
    assert read_old_manifest(file) == ("Ash / left", {"a/b.gcode": RECORD})


def test_old_manifests_are_merged_into_the_store_once(tmp_path):
    data = tmp_path / "data"
    write_old_manifest(data / "gcode-manifest", "Ash", {"a.gcode": RECORD, "b/c.gcode": RECORD})
    write_old_manifest(data / "gcode-manifest", "ash", {"x.gcode": RECORD})  # names differing by case
    store = SqliteStore(tmp_path / "sync.sqlite3")
    manifest = StoreManifestStore(store)
    newer = RECORD.model_copy(update={"sha256": "cd" * 32, "uploaded_at": AT.replace(hour=13)})
    manifest.save("Ash", "a.gcode", newer)  # a tick uploaded it again after the old run

    notes = import_old_manifests(data, manifest)

    assert manifest.load("Ash") == {"a.gcode": newer, "b/c.gcode": RECORD}
    assert manifest.load("ash") == {"x.gcode": RECORD}
    assert not (data / "gcode-manifest").exists()
    kept = data / "gcode-manifest.imported"
    assert len(list(kept.glob("*.json"))) == 2  # the user's copy
    assert len(notes) == 1 and "2 printers, 3 files" in notes[0] and str(kept) in notes[0]
    manifest.forget("Ash", "b/c.gcode")  # the file left the printer since
    assert import_old_manifests(data, manifest) == []  # once: nothing comes back
    assert "b/c.gcode" not in manifest.load("Ash")
    store.close()


def test_an_unreadable_old_file_is_named_and_the_others_still_imported(tmp_path):
    data = tmp_path / "data"
    write_old_manifest(data / "gcode-manifest", "Ash", {"a.gcode": RECORD})
    (data / "gcode-manifest" / "Bishop-12345678.json").write_text("{not json")
    store = SqliteStore(tmp_path / "sync.sqlite3")
    manifest = StoreManifestStore(store)
    notes = import_old_manifests(data, manifest)
    assert manifest.load("Ash") == {"a.gcode": RECORD}
    assert any("Bishop-12345678.json" in n and "not imported" in n for n in notes)
    assert (data / "gcode-manifest.imported" / "Bishop-12345678.json").exists()
    store.close()


def test_no_old_folder_no_notes_and_no_store_writes(tmp_path):
    store = SqliteStore(tmp_path / "sync.sqlite3")
    assert import_old_manifests(tmp_path / "data", StoreManifestStore(store)) == []
    assert store.get_value("gcode-manifest", "Ash") is None
    store.close()
