"""The local side of the mirror: scanning the master folder and hashing its files once per run.

Kept apart from :mod:`farmsync.gcode.plan` so that planning stays pure. Both functions block (disk I/O); the
engine runs them in worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from farmsync.errors import InputError
from farmsync.gcode.paths import path_problem
from farmsync.gcode.plan import (
    DEFAULT_SUFFIXES,
    HASH_ALGORITHMS,
    LocalFile,
    LocalTree,
    has_suffix,
)
from farmsync.logs import get_logger

CHUNK = 1024 * 1024
log = get_logger("gcode")


def scan_local(
    source: Path, *, relative_to: Path | None = None, suffixes: Iterable[str] = DEFAULT_SUFFIXES
) -> LocalTree:
    """Every non-hidden file under ``source`` whose name ends in one of ``suffixes`` (case-insensitive).

    Paths are made relative to ``relative_to`` (default: ``source``), which must be ``source`` or a parent of
    it. Unsafe names are reported in ``problems`` and left out, never raised.

    Links: a file link whose real path lies inside the master is mirrored as a regular file under the link's
    name; links to folders are never followed (their files are mirrored once, under their real path, and no loop
    is possible); anything whose real path lies outside the master is skipped and reported in ``problems``, never
    read: ``ln -s ../.env master/env.gcode`` must not put the ``.env`` on every printer.
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

    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):  # never descends into a link
        here = Path(dirpath)
        for name in [d for d in dirnames if not d.startswith(".") and outside(here / d, root)]:
            rel = (here / name).relative_to(base_dir).as_posix()
            problems.append(f"source folder {rel!r} skipped: {LINK_OUT}")
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink())
        for name in sorted(filenames):
            if name.startswith(".") or not has_suffix(name, suffixes):
                continue
            full = here / name
            rel = full.relative_to(base_dir).as_posix()
            problem = path_problem(rel)
            if problem:
                problems.append(f"source file {rel!r} skipped: name {problem}")
                continue
            if full.is_symlink():
                if outside(full, root):
                    problems.append(f"source file {rel!r} skipped: {LINK_OUT}")
                    continue
                full = Path(os.path.realpath(full))  # read the real file: nothing re-resolves the link later
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


LINK_OUT = "a link to outside the master folder (not followed, never uploaded)"


def outside(path: Path, root: Path) -> bool:
    """Whether ``path`` is a link whose real path lies outside the master folder ``root`` (resolved)."""
    return path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root)


DIGEST_CACHE_FILE = "gcode-digests.json"
"""Where :class:`DigestCache` keeps hashes between runs, in DATA_DIR beside the embedded store."""


class DigestCache:
    """Content hashes of local files, computed on first request and shared by every printer of a run.

    Keyed by (path, size, mtime_ns, inode), so an edited or replaced file is hashed again; the key is the file's
    *current* stat, so a file changed after the scan is never answered from an old entry. sha1 and sha256 come
    from one read (a file needs sha256 for the manifest whenever it is uploaded, and OctoPrint compares by sha1).
    Thread-safe: two printers asking for the same file wait for one read.

    With ``cache_file`` the hashes outlive the run (as git's index does), so a no-op re-sync of a large master
    folder reads no file contents: every run loads the file once and :meth:`save` writes it back (atomically;
    entries of files that are gone are dropped). A cache that cannot be read or written only costs a re-hash.
    """

    VERSION = 1

    def __init__(self, cache_file: Path | None = None) -> None:
        self._values: dict[tuple[str, int, int, int], dict[str, str]] = {}
        self._locks: dict[tuple[str, int, int, int], threading.Lock] = {}
        self._guard = threading.Lock()
        self._cache_file = cache_file
        self._dirty = False
        self.reads = 0
        self.bytes_read = 0
        if cache_file is not None:
            self._load(cache_file)

    def __call__(self, file: LocalFile, algorithm: str) -> str:
        if algorithm not in HASH_ALGORITHMS:
            raise ValueError(f"unsupported hash algorithm {algorithm!r}")
        key = self._key(file)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            known = self._values.setdefault(key, {})
            if algorithm not in known:
                wanted = {"sha1", "sha256"} if algorithm in ("sha1", "sha256") else {algorithm}
                known.update(self._hash(file.abspath, wanted))
                self._dirty = True
            return known[algorithm]

    @staticmethod
    def _key(file: LocalFile) -> tuple[str, int, int, int]:
        try:
            info = os.stat(file.abspath)
        except OSError:  # gone since the scan: hashing will say so
            return (str(file.abspath), file.size, file.mtime_ns, -1)
        return (str(file.abspath), info.st_size, info.st_mtime_ns, info.st_ino)

    def _hash(self, path: Path, algorithms: set[str]) -> dict[str, str]:
        hashers = {name: hashlib.new(name, usedforsecurity=False) for name in sorted(algorithms)}
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                self.bytes_read += len(chunk)
                for hasher in hashers.values():
                    hasher.update(chunk)
        self.reads += 1
        return {name: hasher.hexdigest() for name, hasher in hashers.items()}

    def _load(self, cache_file: Path) -> None:
        try:
            data = json.loads(cache_file.read_text(encoding="utf-8"))
            if data.get("version") != self.VERSION:
                return
            for path, (size, mtime_ns, inode, digests) in data["files"].items():
                known = {k: v for k, v in digests.items() if k in HASH_ALGORITHMS and isinstance(v, str)}
                self._values[(str(path), int(size), int(mtime_ns), int(inode))] = known
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("hash cache %s unreadable, starting afresh: %s", cache_file, exc)
            self._values.clear()

    def save(self) -> None:
        """Write the cache back (no-op without a cache file or when nothing new was hashed)."""
        if self._cache_file is None or not self._dirty:
            return
        files: dict[str, list[object]] = {}
        for (path, size, mtime_ns, inode), digests in list(self._values.items()):
            if digests and os.path.exists(path):
                files[path] = [size, mtime_ns, inode, digests]  # entries hashed later (newer) overwrite
        payload = json.dumps({"version": self.VERSION, "files": files}, separators=(",", ":"))
        tmp = self._cache_file.with_name(f".{self._cache_file.name}.{os.getpid()}.tmp")
        try:
            self._cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(payload, encoding="utf-8")
            os.replace(tmp, self._cache_file)
            self._dirty = False
        except OSError as exc:
            log.warning("hash cache %s not saved (next run hashes again): %s", self._cache_file, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
