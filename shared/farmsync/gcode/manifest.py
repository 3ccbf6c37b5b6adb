"""What farmsync uploaded to each printer, so an unchanged file is recognised without re-uploading it.

Printers rarely report a content hash (only OctoPrint does) and Buddy does not even list sizes, so after an upload
we remember the sha256 and size we sent and the time the printer stamped on its copy. On the next run, a printer
copy whose size and time still match the record holds what we sent, and the local sha256 alone decides.

The interface is three calls; the one home of the manifest is the project's store
(:mod:`farmsync.gcode.store_manifest`), shared by the command line, the ticks and the routes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


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
