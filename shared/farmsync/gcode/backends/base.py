"""What every printer back end offers the G-code mirror, whatever API the printer speaks.

Paths given to and returned by a back end are *display paths*: POSIX, relative to the printer's storage root,
no leading slash, long names (``"apple/prusament pla/apple.gcode"``). How a back end addresses them on the wire
(Buddy's 8.3 short names, OctoPrint's ``path``, Moonraker's ``gcodes/`` root) stays inside the back end, carried
in :attr:`RemoteEntry.ref`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable


class Kind(StrEnum):
    """Which API a printer speaks (the ``kind`` key of printers.yml)."""

    PRUSALINK = "prusalink"  # PrusaLink v1 on Buddy firmware: MK4, MK3.9/3.5, XL, MINI, CORE One
    PRUSALINK_LEGACY = "prusalink-legacy"  # PrusaLink 0.8 on a Raspberry Pi (MK3/MK3S)
    OCTOPRINT = "octoprint"
    MOONRAKER = "moonraker"
    BAMBU = "bambu"  # Bambu Lab X1/P1/P2/A1/H2 in LAN mode: files over implicit FTPS, state over MQTT


@dataclass(frozen=True)
class PrinterStatus:
    """The printer's state as the printer names it, and whether farmsync may touch its files now."""

    state: str
    idle: bool
    detail: str = ""


@dataclass(frozen=True)
class RemoteEntry:
    """One file or folder on a printer.

    ``size`` is None where the listing gives none (Buddy). ``hash`` is ``(algorithm, hexdigest)`` where the
    printer reports one (OctoPrint: sha1). ``read_only`` covers ``ro``/``read_only`` entries and transfers in
    progress: the mirror never touches them. ``ref`` is the back end's own address for the entry.
    """

    path: str
    is_dir: bool
    size: int | None = None
    mtime: float | None = None
    hash: tuple[str, str] | None = None
    read_only: bool = False
    ref: str | None = None
    download_ref: str | None = None


ProgressCallback = Callable[[int], None]
"""Called with the number of bytes sent since the last call."""


@dataclass
class UploadResult:
    """What the printer holds after an upload (size verified by the back end when it can).

    ``hash`` is ``(algorithm, hexdigest)`` of the content the printer confirmed, where it can: OctoPrint's sha1
    (compared with the sha1 of the bytes sent), Moonraker's sha256 (checked by Moonraker itself).
    """

    path: str
    size: int
    mtime: float | None = None
    verified: bool = False
    notes: list[str] = field(default_factory=list)
    hash: tuple[str, str] | None = None


@runtime_checkable
class PrinterBackend(Protocol):
    """The operations the mirror needs. Every method raises :class:`farmsync.errors.UpstreamError` subclasses."""

    name: str
    kind: Kind

    async def status(self) -> PrinterStatus:
        """Current state; ``idle`` follows the back end's idle set (see the issue and printer-apis.md)."""

    async def list_tree(self, root: str = "") -> list[RemoteEntry]:
        """Every file and folder under ``root`` (display path, "" for the storage root), recursively.

        Paths are relative to the storage root (not to ``root``); ``root`` itself is not included. Entries whose
        names a printer sent unsafe (``..``, slashes, NUL) are left out and described in ``backend.skipped``.
        """

    async def stat(self, path: str) -> RemoteEntry | None:
        """One entry with its size where the listing has none (Buddy); None when it does not exist."""

    async def upload(
        self,
        path: str,
        source: Path,
        *,
        size: int,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        """Stream ``source`` to ``path`` (overwriting), creating parent folders; verify the size afterwards."""

    async def delete_file(self, entry: RemoteEntry) -> None:
        """Delete one file."""

    async def make_folder(self, path: str) -> None:
        """Create one folder (parents must exist or be created by the back end)."""

    async def delete_folder(self, entry: RemoteEntry) -> None:
        """Delete one folder that the caller has emptied."""

    async def download(
        self, entry: RemoteEntry, dest: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        """Stream a file to ``dest`` (the caller renames it into place); return the bytes written."""

    async def aclose(self) -> None:
        """Release connections."""
