"""The local side of the mirror: scanning the master folder and hashing its files once per run.

Kept apart from :mod:`farmsync.gcode.plan` so that planning stays pure. Both functions block (disk I/O); the
engine runs them in worker threads.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from farmsync.errors import InputError
from farmsync.gcode.plan import (
    DEFAULT_SUFFIXES,
    HASH_ALGORITHMS,
    LocalFile,
    LocalTree,
    has_suffix,
    path_problem,
)

CHUNK = 1024 * 1024


def scan_local(
    source: Path, *, relative_to: Path | None = None, suffixes: Iterable[str] = DEFAULT_SUFFIXES
) -> LocalTree:
    """Every non-hidden file under ``source`` whose name ends in one of ``suffixes`` (case-insensitive).

    Paths are made relative to ``relative_to`` (default: ``source``), which must be ``source`` or a parent of
    it. Symlinked files are followed; symlinked folders are not (no loops). Unsafe names are reported in
    ``problems`` and left out, never raised.
    """
    suffixes = tuple(suffixes)
    root = Path(source).expanduser()
    if not root.is_dir():
        raise InputError(f"source {str(source)!r} is not a folder", field="source", expected="a folder")
    root = root.resolve()
    base_dir = Path(relative_to).expanduser().resolve() if relative_to is not None else root
    try:
        base = root.relative_to(base_dir).as_posix()
    except ValueError:
        raise InputError(
            f"--relative-to {str(relative_to)!r} is not a parent of --source {str(source)!r}",
            field="relative_to",
            expected="the source folder or one of its parents",
        ) from None
    base = "" if base == "." else base

    files: list[LocalFile] = []
    problems: list[str] = []

    def walk_error(error: OSError) -> None:
        problems.append(f"cannot read {error.filename!r}: {error.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not has_suffix(name, suffixes):
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(base_dir).as_posix()
            problem = path_problem(rel)
            if problem:
                problems.append(f"source file {rel!r} skipped: name {problem}")
                continue
            try:
                info = full.stat()
            except OSError as exc:
                problems.append(f"source file {rel!r} skipped: {exc.strerror}")
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            files.append(LocalFile(rel, full, info.st_size, info.st_mtime, info.st_mtime_ns))
    files.sort(key=lambda f: f.rel)
    return LocalTree(files=tuple(files), base=base, problems=tuple(problems))


class DigestCache:
    """Content hashes of local files, computed on first request and shared by every printer of a run.

    Keyed by (path, size, mtime_ns) so an edited file is hashed again. sha1 and sha256 come from one read (a
    file needs sha256 for the manifest whenever it is uploaded, and OctoPrint compares by sha1). Thread-safe:
    two printers asking for the same file wait for one read.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, int, int], dict[str, str]] = {}
        self._locks: dict[tuple[str, int, int], threading.Lock] = {}
        self._guard = threading.Lock()
        self.reads = 0

    def __call__(self, file: LocalFile, algorithm: str) -> str:
        if algorithm not in HASH_ALGORITHMS:
            raise ValueError(f"unsupported hash algorithm {algorithm!r}")
        key = (str(file.abspath), file.size, file.mtime_ns)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            known = self._values.setdefault(key, {})
            if algorithm not in known:
                wanted = {"sha1", "sha256"} if algorithm in ("sha1", "sha256") else {algorithm}
                known.update(self._hash(file.abspath, wanted))
            return known[algorithm]

    def _hash(self, path: Path, algorithms: set[str]) -> dict[str, str]:
        hashers = {name: hashlib.new(name, usedforsecurity=False) for name in sorted(algorithms)}
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                for hasher in hashers.values():
                    hasher.update(chunk)
        self.reads += 1
        return {name: hasher.hexdigest() for name, hasher in hashers.items()}
