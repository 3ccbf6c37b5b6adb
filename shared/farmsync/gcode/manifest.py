"""What farmsync uploaded to each printer, so an unchanged file is recognised without re-uploading it.

Printers rarely report a content hash (only OctoPrint does) and Buddy does not even list sizes, so after an upload
we remember the sha256 and size we sent and the time the printer stamped on its copy. On the next run, a printer
copy whose size and time still match the record holds what we sent, and the local sha256 alone decides.

The store interface is deliberately three calls so the idempotency store can back it later.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from farmsync.errors import StoreError


def _now() -> datetime:
    return datetime.now(UTC)


class ManifestRecord(BaseModel):
    """One uploaded file: our content hash and size, the printer's time for its copy, when we sent it."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    size: int = Field(ge=0)
    mtime: float | None = None
    uploaded_at: datetime = Field(default_factory=_now)


@runtime_checkable
class ManifestStore(Protocol):
    """Per-printer record of uploads, keyed by printer display path. Calls are blocking; keep them short."""

    def load(self, printer: str) -> dict[str, ManifestRecord]: ...

    def save(self, printer: str, path: str, record: ManifestRecord) -> None: ...

    def forget(self, printer: str, path: str) -> None: ...


class JsonManifestStore:
    """One JSON file per printer under ``directory``, replaced atomically on every change.

    Nothing is created until the first ``save`` (a dry run leaves no trace). A corrupt file raises StoreError
    rather than being silently reset, because an empty manifest would cause mass re-uploads.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, dict[str, ManifestRecord]] = {}
        self._lock = threading.Lock()

    def file_for(self, printer: str) -> Path:
        """A safe, collision-free file name for any printer name (names differing by case stay apart)."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", printer).strip("-.")[:40] or "printer"
        digest = hashlib.sha256(printer.encode()).hexdigest()[:8]
        return self.directory / f"{slug}-{digest}.json"

    def load(self, printer: str) -> dict[str, ManifestRecord]:
        with self._lock:
            return dict(self._records(printer))

    def save(self, printer: str, path: str, record: ManifestRecord) -> None:
        with self._lock:
            records = self._records(printer)
            records[path] = record
            self._write(printer, records)

    def forget(self, printer: str, path: str) -> None:
        with self._lock:
            records = self._records(printer)
            if records.pop(path, None) is not None:
                self._write(printer, records)

    def _records(self, printer: str) -> dict[str, ManifestRecord]:
        if printer not in self._cache:
            self._cache[printer] = self._read(printer)
        return self._cache[printer]

    def _read(self, printer: str) -> dict[str, ManifestRecord]:
        file = self.file_for(printer)
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"manifest {file}: cannot read ({exc.__class__.__name__})") from None
        try:
            files = raw["files"]
            return {str(path): ManifestRecord.model_validate(rec) for path, rec in files.items()}
        except (KeyError, TypeError, AttributeError, ValidationError):
            raise StoreError(f"manifest {file}: unexpected content") from None

    def _write(self, printer: str, records: dict[str, ManifestRecord]) -> None:
        file = self.file_for(printer)
        body = {
            "printer": printer,
            "files": {path: records[path].model_dump(mode="json") for path in sorted(records)},
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".manifest-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(body, out, indent=1, sort_keys=True)
                os.replace(tmp, file)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(f"manifest {file}: cannot write ({exc.__class__.__name__})") from None
