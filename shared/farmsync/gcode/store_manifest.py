"""The upload manifest kept in the project's store (SQLite or Firestore), for every G-code run: the command
line, the ticks and the routes (:mod:`farmsync.gcode.service`).

Layout: values namespace ``gcode-manifest``, one value per printer (key = printer name) holding
``{"printer": name, "files": [{"path": ..., "sha256": ..., "size": ..., "mtime": ..., "uploaded_at": ...}]}``.

Why one value per printer: ``load`` is one read per printer per run, which is what the engine asks for. The store
cannot list values, so per-file values would need an index value that has the very same read-modify-write race.
Writes are guarded by a short lease lock (``gcode-manifest-lock:<printer>``, see :func:`store_lock`) because two
runs may save records of the same printer at once. Files are a list, not a map keyed by path: Firestore map keys
have rules (no empty or ``__x__`` names), list items have none. A Firestore document holds 1 MiB, so about 5,000
files per printer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from farmsync.errors import StoreError
from farmsync.gcode.guard import store_lock
from farmsync.gcode.manifest import ManifestRecord
from farmsync.store.base import Store

NAMESPACE = "gcode-manifest"
LOCK_NAMESPACE = "gcode-manifest-lock"


class StoreManifestStore:
    """:class:`farmsync.gcode.manifest.ManifestStore` on a :class:`Store`. Blocking, like the store."""

    def __init__(self, store: Store, *, lock_seconds: float = 15.0, wait_seconds: float = 30.0) -> None:
        self.store = store
        self.lock_seconds = lock_seconds
        self.wait_seconds = wait_seconds

    def load(self, printer: str) -> dict[str, ManifestRecord]:
        return self._decode(printer, self.store.get_value(NAMESPACE, printer))

    def save(self, printer: str, path: str, record: ManifestRecord) -> None:
        with self._locked(printer):
            records = self.load(printer)
            records[path] = record
            self._write(printer, records)

    def forget(self, printer: str, path: str) -> None:
        if path not in self.load(printer):
            return  # nothing to forget: no lock, no write
        with self._locked(printer):
            records = self.load(printer)
            if records.pop(path, None) is not None:
                self._write(printer, records)

    def merge(self, printer: str, records: Mapping[str, ManifestRecord]) -> int:
        """Add ``records`` (the old upload manifest's) in one write; where both hold a path, the later upload
        wins. Returns how many records changed."""
        with self._locked(printer):
            current = self.load(printer)
            changed = 0
            for path, record in records.items():
                known = current.get(path)
                if known is None or record.uploaded_at > known.uploaded_at:
                    current[path] = record
                    changed += 1
            if changed:
                self._write(printer, current)
        return changed

    def _locked(self, printer: str) -> Any:
        return store_lock(
            self.store,
            LOCK_NAMESPACE,
            printer,
            lease_seconds=self.lock_seconds,
            wait_seconds=self.wait_seconds,
        )

    def _write(self, printer: str, records: dict[str, ManifestRecord]) -> None:
        files = [{"path": path, **records[path].model_dump(mode="json")} for path in sorted(records)]
        self.store.put_value(NAMESPACE, printer, {"printer": printer, "files": files})

    @staticmethod
    def _decode(printer: str, raw: Any) -> dict[str, ManifestRecord]:
        """A corrupt value is an error, not an empty manifest: that would cause mass re-uploads."""
        if raw is None:
            return {}
        try:
            out: dict[str, ManifestRecord] = {}
            for item in raw["files"]:
                fields = dict(item)
                path = fields.pop("path")
                if not isinstance(path, str) or not path:
                    raise TypeError("path")
                out[path] = ManifestRecord.model_validate(fields)
            return out
        except (KeyError, TypeError, AttributeError, ValueError, ValidationError):
            raise StoreError(f"manifest of printer {printer!r} in the store has unexpected content") from None
