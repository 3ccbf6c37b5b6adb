"""An in-memory printer and back end for the G-code mirror tests (no network, no real back ends).

``FakePrinter`` holds a printer's files and records every call and every upload's time interval, so tests can
assert on what was written and on overlap between printers without looking at the wall clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from farmsync.errors import UpstreamConflict, UpstreamError, UpstreamNotFound, UpstreamTransportError
from farmsync.gcode.backends.base import (
    Kind,
    PrinterStatus,
    ProgressCallback,
    RemoteEntry,
    UploadResult,
)
from farmsync.gcode.config import PrinterConfig
from farmsync.gcode.engine import BackendFactory, MirrorContext
from farmsync.gcode.manifest import ManifestRecord, ManifestStore

T0 = 1_800_000_000.0  # 2027-01-15, a fixed "now" for printer timestamps
IDLE_STATES = {"IDLE", "READY", "FINISHED", "STOPPED"}


@dataclass
class FakeFile:
    data: bytes
    mtime: float = T0
    read_only: bool = False


@dataclass
class FakePrinter:
    """One printer's storage and behaviour.

    ``listing`` says what the listing reveals: "buddy" (time only), "sizes" (size and time), "octoprint"
    (size, time and sha1). ``fail`` maps (operation, path) to the exception that call raises. ``capacity`` is
    the drive's size in bytes: like Buddy, an upload needs room for the whole new file while the old one is
    still there, else 507. ``early_replace`` is the back end's flag of that name (Buddy's is on).
    """

    name: str
    state: str = "IDLE"
    listing: str = "buddy"
    upload_delay: float = 0.0
    files: dict[str, FakeFile] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    fail: dict[tuple[str, str], Exception] = field(default_factory=dict)
    clock: float = T0 + 3600
    calls: list[tuple[str, str]] = field(default_factory=list)
    intervals: list[tuple[str, float, float]] = field(default_factory=list)
    closed: bool = False
    capacity: int | None = None
    early_replace: bool = False

    def add(self, path: str, data: bytes | str, *, mtime: float = T0, read_only: bool = False) -> None:
        self.files[path] = FakeFile(data.encode() if isinstance(data, str) else data, mtime, read_only)
        self._parents(path)

    def _parents(self, path: str) -> None:
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            self.dirs.add(path)

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in ("upload", "delete_file", "delete_folder", "make_folder")]

    def _check(self, op: str, path: str) -> None:
        self.calls.append((op, path))
        error = self.fail.get((op, path)) or self.fail.get((op, "*"))
        if error is not None:
            raise error

    def entries(self, root: str = "") -> list[RemoteEntry]:
        def under(p: str) -> bool:
            return not root or p.startswith(root + "/")

        out = [RemoteEntry(d, True) for d in sorted(self.dirs) if under(d)]
        for path, f in sorted(self.files.items()):
            if not under(path):
                continue
            size = None if self.listing == "buddy" else len(f.data)
            digest = ("sha1", hashlib.sha1(f.data).hexdigest()) if self.listing == "octoprint" else None  # noqa: S324
            out.append(RemoteEntry(path, False, size=size, mtime=f.mtime, hash=digest, read_only=f.read_only))
        return out


class FakeBackend:
    """PrinterBackend over a FakePrinter."""

    def __init__(self, printer: FakePrinter, kind: Kind = Kind.PRUSALINK) -> None:
        self.printer = printer
        self.name = printer.name
        self.kind = kind
        self.early_replace = printer.early_replace

    async def status(self) -> PrinterStatus:
        self.printer._check("status", "")
        return PrinterStatus(self.printer.state, self.printer.state in IDLE_STATES)

    async def list_tree(self, root: str = "") -> list[RemoteEntry]:
        self.printer._check("list_tree", root)
        if root and root not in self.printer.dirs:
            raise UpstreamNotFound(self.name, "GET", f"/files/{root}")
        return self.printer.entries(root)

    async def stat(self, path: str) -> RemoteEntry | None:
        self.printer._check("stat", path)
        if path in self.printer.dirs:
            return RemoteEntry(path, True)
        found = self.printer.files.get(path)
        if found is None:
            return None
        return RemoteEntry(path, False, size=len(found.data), mtime=found.mtime, read_only=found.read_only)

    async def upload(
        self,
        path: str,
        source: Path,
        *,
        size: int,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        started = time.monotonic()
        self.printer._check("upload", path)
        data = Path(source).read_bytes()
        used = sum(len(f.data) for f in self.printer.files.values())
        if self.printer.capacity is not None and used + len(data) > self.printer.capacity:
            raise UpstreamError(
                self.name, "PUT", path, "Insufficient Storage: the USB drive is full", status=507
            )
        for start in range(0, len(data), 4096):
            if progress is not None:
                progress(len(data[start : start + 4096]))
            if start == 0 and self.printer.upload_delay:
                await asyncio.sleep(
                    self.printer.upload_delay
                )  # the first bytes are out, the rest on the wire
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise UpstreamConflict(self.name, "PUT", path, "checksum mismatch")
        self.printer.clock += 10
        self.printer.add(path, data, mtime=self.printer.clock)
        self.printer.intervals.append((path, started, time.monotonic()))
        return UploadResult(path=path, size=len(data), mtime=self.printer.clock, verified=True)

    async def delete_file(self, entry: RemoteEntry) -> None:
        self.printer._check("delete_file", entry.path)
        if entry.path not in self.printer.files:
            raise UpstreamNotFound(self.name, "DELETE", entry.path)
        del self.printer.files[entry.path]

    async def make_folder(self, path: str) -> None:
        self.printer._check("make_folder", path)
        self.printer.dirs.add(path)
        self.printer._parents(path)

    async def delete_folder(self, entry: RemoteEntry) -> None:
        self.printer._check("delete_folder", entry.path)
        prefix = entry.path + "/"
        if any(p.startswith(prefix) for p in [*self.printer.files, *self.printer.dirs]):
            raise UpstreamNotFound(self.name, "DELETE", entry.path, "folder not empty")
        self.printer.dirs.discard(entry.path)

    async def download(
        self, entry: RemoteEntry, dest: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        self.printer._check("download", entry.path)
        data = self.printer.files[entry.path].data
        Path(dest).write_bytes(data)
        return len(data)

    async def aclose(self) -> None:
        self.printer.closed = True


class FakeFarm:
    """Printers by name and a back-end factory that records which printers were ever constructed."""

    def __init__(self, printers: Iterable[FakePrinter] = ()) -> None:
        self.printers = {p.name: p for p in printers}
        self.constructed: list[str] = []
        self.unreachable: set[str] = set()

    def __getitem__(self, name: str) -> FakePrinter:
        return self.printers[name]

    def factory(self, config: PrinterConfig) -> FakeBackend:
        self.constructed.append(config.name)
        if config.name in self.unreachable:
            raise UpstreamTransportError(config.name, "GET", "/api/v1/status", "connection refused")
        return FakeBackend(self.printers[config.name], config.kind)


def printer_config(name: str, port: int = 8101, **extra: object) -> PrinterConfig:
    """A valid loopback printer entry."""
    values: dict[str, object] = {
        "name": name,
        "kind": Kind.PRUSALINK,
        "printer_type": "MK4",
        "host": f"http://127.0.0.1:{port}",
        "username": "maker",
        "password": f"pw{port}",
    }
    values.update(extra)
    return PrinterConfig.model_validate(values)


def write_tree(root: Path, files: dict[str, bytes | str], *, mtime: float | None = None) -> None:
    """Create files under ``root`` (parents too), optionally with a fixed mtime."""
    import os

    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        if mtime is not None:
            os.utime(path, (mtime, mtime))


class MemoryManifestStore:
    """An upload manifest in a dict, for tests of the engine and pull (the product keeps it in the store)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, ManifestRecord]] = {}
        self._lock = threading.Lock()

    def load(self, printer: str) -> dict[str, ManifestRecord]:
        with self._lock:
            return dict(self._data.get(printer, {}))

    def save(self, printer: str, path: str, record: ManifestRecord) -> None:
        with self._lock:
            self._data.setdefault(printer, {})[path] = record

    def forget(self, printer: str, path: str) -> None:
        with self._lock:
            self._data.get(printer, {}).pop(path, None)


def ctx(factory: BackendFactory, manifest: ManifestStore | None = None, **kwargs: object) -> MirrorContext:
    """A run context on in-memory printers: a fresh in-memory manifest unless one is given."""
    return MirrorContext(factory, manifest or MemoryManifestStore(), **kwargs)  # type: ignore[arg-type]


def write_old_manifest(folder: Path, printer: str, records: dict[str, ManifestRecord]) -> Path:
    """A file exactly as the old command line wrote it: ``<slug>-<sha256[:8]>.json``, indent 1, sorted keys."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", printer).strip("-.")[:40] or "printer"
    file = folder / f"{slug}-{hashlib.sha256(printer.encode()).hexdigest()[:8]}.json"
    body = {"printer": printer, "files": {p: records[p].model_dump(mode="json") for p in sorted(records)}}
    folder.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")
    return file
