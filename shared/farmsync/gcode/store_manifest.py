"""The upload manifest kept in the project's store (SQLite or Firestore), for every G-code run: the command
line, the ticks and the routes (:mod:`farmsync.gcode.service`).

Layout: one cursor per printer (stream ``gcode-manifest:<printer name>``) whose value holds
``{"printer": name, "files": [{"path": ..., "sha256": ..., "size": ..., "mtime": ..., "uploaded_at": ...}]}``.

Why one value per printer: ``load`` is one read per printer per run, which is what the engine asks for. The store
cannot list values, so per-file values would need an index value that has the very same read-modify-write race.
Why a cursor: two runs may save records of the same printer at once, and a cursor's compare-and-set makes each
save a read and one conditional write (a lost race reads again), where a lease lock around a plain value cost a
claim, a read, a write and a release: four store transactions after every upload, on a store whose writers take
turns. Files are a list, not a map keyed by path: Firestore map keys have rules (no empty or ``__x__`` names), list
items have none. A Firestore document holds 1 MiB, so about 5,000 files per printer.

Earlier versions kept the manifest as a plain value (namespace ``gcode-manifest``); it is read while a printer has
no cursor yet and moved into the cursor by the first write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from farmsync.errors import StoreError
from farmsync.gcode.manifest import ManifestRecord
from farmsync.store import cursors
from farmsync.store.base import Store

STREAM = "gcode-manifest:"
"""+ the printer's name: the cursor holding that printer's manifest."""
LEGACY_NAMESPACE = "gcode-manifest"
"""The values namespace earlier versions kept the manifest in (key = printer name)."""
ATTEMPTS = 100
"""Compare-and-sets one write tries before it gives up; each lost race means another write landed, so a run
only gets this far behind a storm of writers to one printer."""

Records = dict[str, ManifestRecord]


class StoreManifestStore:
    """:class:`farmsync.gcode.manifest.ManifestStore` on a :class:`Store`. Blocking, like the store."""

    def __init__(self, store: Store, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.sleep = sleep

    @property
    def runs_locally(self) -> bool:
        """As its store: whether its calls may share worker trips (:func:`farmsync.offload.store_call`)."""
        return self.store.runs_locally

    def load(self, printer: str) -> Records:
        _version, raw = cursors.read(self.store, STREAM + printer, legacy=(LEGACY_NAMESPACE, printer))
        return self._decode(printer, raw)

    def save(self, printer: str, path: str, record: ManifestRecord) -> None:
        def put(records: Records) -> bool:
            records[path] = record
            return True

        self._update(printer, put)

    def forget(self, printer: str, path: str) -> None:
        self._update(printer, lambda records: records.pop(path, None) is not None)

    def merge(self, printer: str, records: Mapping[str, ManifestRecord]) -> int:
        """Add ``records`` (the old upload manifest's) in one write; where both hold a path, the later upload
        wins. Returns how many records changed."""
        changed = 0

        def add(current: Records) -> bool:
            nonlocal changed
            changed = 0
            for path, record in records.items():
                known = current.get(path)
                if known is None or record.uploaded_at > known.uploaded_at:
                    current[path] = record
                    changed += 1
            return changed > 0

        self._update(printer, add)
        return changed

    def _update(self, printer: str, change: Callable[[Records], bool]) -> None:
        """Read, ``change`` (False: nothing to write), compare-and-set; a lost race starts again from the read."""

        def edit(_version: int | None, raw: Any) -> Any:
            records = self._decode(printer, raw)
            return self._encode(printer, records) if change(records) else cursors.UNCHANGED

        cursors.update(
            self.store,
            STREAM + printer,
            edit,
            what=f"manifest of printer {printer!r}",
            legacy=(LEGACY_NAMESPACE, printer),
            attempts=ATTEMPTS,
            sleep=self.sleep,
        )

    @staticmethod
    def _encode(printer: str, records: Records) -> dict[str, Any]:
        files = [{"path": path, **records[path].model_dump(mode="json")} for path in sorted(records)]
        return {"printer": printer, "files": files}

    @staticmethod
    def _decode(printer: str, raw: Any) -> Records:
        """A corrupt value is an error, not an empty manifest: that would cause mass re-uploads."""
        if raw is None:
            return {}
        try:
            out: Records = {}
            for item in raw["files"]:
                fields = dict(item)
                path = fields.pop("path")
                if not isinstance(path, str) or not path:
                    raise TypeError("path")
                out[path] = ManifestRecord.model_validate(fields)
            return out
        except (KeyError, TypeError, AttributeError, ValueError, ValidationError):
            raise StoreError(f"manifest of printer {printer!r} in the store has unexpected content") from None
