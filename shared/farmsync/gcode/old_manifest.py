"""The old upload manifest: one JSON file per printer under DATA_DIR/gcode-manifest, read once into the store.

``farmsync gcode`` used to keep its manifest there while the ticks kept theirs in the store, so neither saw the
other's uploads. Now every run keeps it in the store; a farm upgraded from that version would otherwise compare
every printer file by size and time alone and re-upload whatever those cannot vouch for. So the first run (of
any kind, dry runs too: the plan shown must be the real one) merges every file of the folder into the store
(:meth:`StoreManifestStore.merge`: the later upload of a path wins) and renames the folder to
``gcode-manifest.imported``, which is both the "done" mark and the user's copy. A file that cannot be read is
left in that folder and named in the run's notes: its printer's files are compared without a manifest.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import ValidationError

from farmsync.gcode.manifest import ManifestRecord
from farmsync.gcode.store_manifest import StoreManifestStore

log = logging.getLogger(__name__)

OLD_MANIFEST_DIR = "gcode-manifest"
IMPORTED_SUFFIX = ".imported"


class UnreadableManifest(ValueError):
    """An old manifest file that is not JSON of the expected shape."""


def read_old_manifest(file: Path) -> tuple[str, dict[str, ManifestRecord]]:
    """(printer name, records) of one old manifest file: ``{"printer": name, "files": {path: record}}``."""
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
        printer = raw["printer"]
        files = raw["files"]
        if not isinstance(printer, str) or not printer:
            raise TypeError("printer")
        return printer, {str(path): ManifestRecord.model_validate(rec) for path, rec in files.items()}
    except OSError as exc:
        raise UnreadableManifest(f"cannot read ({exc.__class__.__name__})") from None
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError):
        raise UnreadableManifest("unexpected content") from None


def import_old_manifests(data_dir: Path, manifest: StoreManifestStore) -> list[str]:
    """Merge DATA_DIR/gcode-manifest into the store once; returns notes for the run's report (none when there
    is nothing to import). A store error propagates: the folder stays, and the next run tries again."""
    folder = data_dir / OLD_MANIFEST_DIR
    if not folder.is_dir():
        return []
    notes: list[str] = []
    printers = records = 0
    for file in sorted(folder.glob("*.json")):
        try:
            printer, found = read_old_manifest(file)
        except UnreadableManifest as exc:
            notes.append(f"old upload manifest {file.name}: {exc}; left in place, not imported")
            continue
        manifest.merge(printer, found)
        printers += 1
        records += len(found)
    target = _free_name(folder.with_name(folder.name + IMPORTED_SUFFIX))
    try:
        folder.rename(target)
    except FileNotFoundError:  # another run imported it at the same time
        return notes
    except OSError as exc:
        log.warning("could not rename %s after importing it: %s", folder, exc.strerror)
        notes.append(f"old upload manifest imported, but {folder} could not be renamed ({exc.strerror})")
        return notes
    notes.insert(
        0,
        f"read the old upload manifest ({printers} printers, {records} files) into the store; "
        f"the old files are kept in {target}",
    )
    return notes


def _free_name(path: Path) -> Path:
    candidate, number = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}-{number}")
        number += 1
    return candidate
