"""Pure planning: (local tree, printer tree, manifest, options) -> the actions that mirror one onto the other.

Nothing here touches the disk or the network. Content comparisons call an injected ``digest`` function, so a
file is hashed only when a decision needs it (the caller caches; see :mod:`farmsync.gcode.local`).

Decision order for a file present on both sides (the first rule that has data decides):

1. the printer's own content hash (OctoPrint's sha1): equal -> unchanged, else replace;
2. sizes known on both sides and different -> replace;
3. our manifest: when the printer copy still looks like what we uploaded (its size and time match the record),
   the local sha256 against the record's decides;
4. the mtime rule: local mtime later than the printer's time + 60 s -> replace. Both are epoch seconds, which
   are UTC by definition (never re-read a UTC stamp as local time: that shifts it by the UTC offset);
5. nothing to compare -> unchanged (a printer copy with no size, hash or time is taken as in step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from farmsync.gcode.backends.base import RemoteEntry
from farmsync.gcode.manifest import ManifestRecord
from farmsync.gcode.paths import PrinterPath, in_scope, join, parents, path_problem

DEFAULT_SUFFIXES: tuple[str, ...] = (".gcode", ".bgcode", ".gco", ".g")
# Storage roots printers put in front of display paths; a leading one in ``--destination`` means "the root".
STORAGE_ROOTS: tuple[str, ...] = ("usb", "local", "sdcard", "gcodes")
MTIME_SLACK = 60.0  # the mtime rule: "> 60 s newer" means changed
MTIME_TOLERANCE = 2.0  # FAT stores times with 2 s resolution
HASH_ALGORITHMS = frozenset({"sha1", "sha256", "md5"})

Digest = Callable[["LocalFile", str], str]
"""``digest(file, algorithm) -> hexdigest``; algorithm is one of :data:`HASH_ALGORITHMS`."""


class PathProblem(ValueError):
    """A destination that must not be used: traversal, backslash, NUL or another control character."""


class Op(StrEnum):
    UPLOAD = "upload"  # missing on the printer
    REPLACE = "replace"  # on the printer, content differs
    DELETE = "delete"  # on the printer under the destination, not in the source
    DELETE_FOLDER = "delete_folder"  # left empty by the deletions (deepest first)
    SKIP = "skip"  # unchanged, read-only, in transfer, not ours


WRITE_OPS = frozenset({Op.UPLOAD, Op.REPLACE, Op.DELETE, Op.DELETE_FOLDER})


@dataclass(frozen=True)
class LocalFile:
    """One file of the master folder. ``rel`` is POSIX and relative to ``--relative-to``."""

    rel: str
    abspath: Path
    size: int
    mtime: float
    mtime_ns: int = 0


@dataclass(frozen=True)
class LocalTree:
    """The master folder as scanned. ``base`` is the source folder relative to ``--relative-to`` ("" if same)."""

    files: tuple[LocalFile, ...]
    base: str = ""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanOptions:
    destination: str = ""  # already normalised (see normalize_destination)
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    mtime_slack: float = MTIME_SLACK
    mtime_tolerance: float = MTIME_TOLERANCE


@dataclass(frozen=True)
class Action:
    """One step of a plan. ``path`` is the printer display path; ``size`` the bytes concerned when known."""

    op: Op
    path: PrinterPath
    reason: str
    size: int | None = None
    local: LocalFile | None = None
    remote: RemoteEntry | None = None
    sha256: str | None = None

    @property
    def is_write(self) -> bool:
        return self.op in WRITE_OPS


@dataclass(frozen=True)
class Plan:
    """Actions in execution order: deletes, folder deletes (bottom-up), uploads and replaces, then skips."""

    scope: str
    actions: tuple[Action, ...]
    warnings: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    def writes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.is_write)

    def count(self, op: Op) -> int:
        return sum(1 for a in self.actions if a.op is op)

    @property
    def upload_bytes(self) -> int:
        return sum(a.size or 0 for a in self.actions if a.op in (Op.UPLOAD, Op.REPLACE))

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(a.path for a in self.actions)

    @classmethod
    def of(cls, scope: str, actions: Iterable[Action], warnings: Iterable[str] = ()) -> Plan:
        """A plan of ``actions`` as given (already in execution order), with its counts."""
        actions = tuple(actions)
        counts = {op.value: sum(1 for a in actions if a.op is op) for op in Op}
        return cls(scope=scope, actions=actions, warnings=tuple(warnings), counts=counts)

    def without(self, paths: Iterable[str]) -> Plan:
        """This plan less the actions on ``paths`` (files another part of the run has already dealt with)."""
        drop = set(paths)
        return Plan.of(self.scope, (a for a in self.actions if a.path not in drop), self.warnings)


# --- paths -----------------------------------------------------------------------------------------------


def normalize_destination(value: str | None, *, storage: str | None = None) -> str:
    """``--destination`` as a display path. ``/usb/`` -> "", ``/usb/farm`` -> "farm", ``farm/`` -> "farm".

    A leading storage root (usb, local, sdcard, gcodes, or the printer's configured ``storage``) is stripped only
    from absolute values, which is how printers.yml users wrote them (``-d /usb/``).
    """
    if value is None:
        return ""
    text = value.strip()
    if "\x00" in text:
        raise PathProblem("contains a NUL byte")
    if "\\" in text:
        raise PathProblem("contains a backslash")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise PathProblem("contains a control character")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathProblem("has a '..' component")
    roots = {r.lower() for r in STORAGE_ROOTS}
    if storage and storage.strip("/"):
        roots.add(storage.strip("/").lower())
    if text.startswith("/") and parts and parts[0].lower() in roots:
        parts = parts[1:]
    return "/".join(parts)


def normalize_suffixes(values: Iterable[str]) -> tuple[str, ...]:
    """Lower-case, dot-prefixed, de-duplicated, in the order given (``GCODE`` -> ``.gcode``)."""
    out: list[str] = []
    for value in values:
        for piece in value.split(","):
            suffix = piece.strip().lower()
            if not suffix:
                continue
            suffix = suffix if suffix.startswith(".") else "." + suffix
            if suffix not in out:
                out.append(suffix)
    return tuple(out)


def has_suffix(name: str, suffixes: Iterable[str]) -> bool:
    """Case-insensitive suffix match on the last path component (needs a stem: ``.gcode`` alone is hidden)."""
    base = name.rsplit("/", 1)[-1].lower()
    return any(base.endswith(s) and len(base) > len(s) for s in suffixes)


def is_hidden(rel: str) -> bool:
    """A component starting with '.' hides the file (and the printers hide such names too)."""
    return any(part.startswith(".") for part in rel.split("/"))


def utc(ts: float) -> str:
    """An epoch time as ISO-8601 UTC, for reasons shown to people."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- planning --------------------------------------------------------------------------------------------


def make_plan(
    local: LocalTree,
    remote: Iterable[RemoteEntry],
    options: PlanOptions,
    *,
    digest: Digest,
    manifest: Mapping[str, ManifestRecord] | None = None,
) -> Plan:
    """The deterministic plan that makes the printer's copy of the destination equal the source folder."""
    manifest = manifest or {}
    scope = join(options.destination, local.base)
    warnings: list[str] = []
    kept: set[str] = set()  # paths that will exist afterwards (their parents must stay)
    remote_files: dict[PrinterPath, RemoteEntry] = {}  # every key passed path_problem
    remote_dirs: dict[PrinterPath, RemoteEntry] = {}

    for entry in remote:
        path = entry.path.rstrip("/") if entry.is_dir else entry.path
        if path == scope or (not path and not scope):
            continue
        problem = path_problem(path)
        if problem:
            if in_scope(path, scope):
                warnings.append(f"left alone printer entry {path!r}: {problem}")
                kept.add(path)
            continue
        if not in_scope(path, scope):
            continue  # outside the destination: never ours to touch
        table = remote_dirs if entry.is_dir else remote_files
        table.setdefault(PrinterPath(path), entry)

    uploads: list[Action] = []
    skips: list[Action] = []
    deletes: list[Action] = []
    matched: set[str] = set()

    for file in sorted(local.files, key=lambda f: f.rel):
        problem = path_problem(file.rel)
        if problem:
            warnings.append(f"left out source file {file.rel!r}: {problem}")
            continue
        target = PrinterPath(join(options.destination, file.rel))  # both parts checked
        kept.add(target)
        remote_file = remote_files.get(target)
        if remote_file is not None:
            matched.add(target)
        if file.size == 0:
            skips.append(Action(Op.SKIP, target, "empty file: printers refuse 0-byte uploads", 0, file))
            continue
        if remote_file is None:
            reason = "missing on the printer"
            if target in remote_dirs:
                reason += " (a folder of that name is in the way)"
            uploads.append(Action(Op.UPLOAD, target, reason, file.size, file))
            continue
        op, reason, sha256 = _compare(file, remote_file, manifest.get(target), options, digest)
        action = Action(op, target, reason, file.size, file, remote_file, sha256)
        (uploads if op is Op.REPLACE else skips).append(action)

    for path in sorted(remote_files):
        if path in matched:
            continue
        entry = remote_files[path]
        if entry.read_only:
            kept.add(path)
            skips.append(Action(Op.SKIP, path, "read-only or transfer in progress", entry.size, remote=entry))
        elif not has_suffix(path, options.suffixes):
            kept.add(path)
            skips.append(Action(Op.SKIP, path, "not a mirrored file type", entry.size, remote=entry))
        else:
            deletes.append(Action(Op.DELETE, path, "not in the source", entry.size, remote=entry))

    read_only_dirs = {path for path, entry in remote_dirs.items() if entry.read_only}
    keep_dirs = {p for path in kept | read_only_dirs for p in parents(path)} | read_only_dirs
    folder_deletes = [
        Action(Op.DELETE_FOLDER, path, "empty after the deletions", remote=entry)
        for path, entry in remote_dirs.items()
        if path not in keep_dirs
    ]
    folder_deletes.sort(key=lambda a: (-a.path.count("/"), a.path))

    return Plan.of(
        scope, (*deletes, *folder_deletes, *uploads, *sorted(skips, key=lambda a: a.path)), warnings
    )


def changed_since_upload(
    local: LocalTree,
    options: PlanOptions,
    manifest: Mapping[str, ManifestRecord],
    *,
    digest: Digest,
) -> list[tuple[LocalFile, ManifestRecord]]:
    """Source files we have uploaded to this printer before and that have changed since (size or sha256).

    Whatever the printer holds, such a file is going to be replaced unless its copy there is read-only or no
    longer ours (see :func:`early_replace`), so it can be sent before the whole printer is listed.
    """
    changed = []
    for file in sorted(local.files, key=lambda f: f.rel):
        if file.size == 0 or path_problem(file.rel):
            continue
        record = manifest.get(join(options.destination, file.rel))
        if record is None:
            continue
        if file.size != record.size or digest(file, "sha256") != record.sha256:
            changed.append((file, record))
    return changed


def early_replace(
    file: LocalFile,
    remote: RemoteEntry | None,
    record: ManifestRecord,
    options: PlanOptions,
    *,
    digest: Digest,
) -> Action | None:
    """The replace :func:`make_plan` would decide for ``file`` given the printer's own entry for it (one stat),
    or None when the plan has to decide: missing (its parents may need the plan's order), a folder in the way,
    read-only, or a printer copy someone else changed that the mtime rule keeps."""
    if remote is None or remote.is_dir:
        return None
    op, reason, sha256 = _compare(file, remote, record, options, digest)
    if op is not Op.REPLACE:
        return None
    return Action(
        op, PrinterPath(join(options.destination, file.rel)), reason, file.size, file, remote, sha256
    )


def paths_needing_size(
    local: LocalTree,
    remote: Iterable[RemoteEntry],
    options: PlanOptions,
    manifest: Mapping[str, ManifestRecord] | None = None,
) -> list[str]:
    """Printer files worth one extra ``stat`` call for their size before planning (Buddy lists none).

    Only files the source also has, with no size and no hash, that our manifest cannot vouch for: there a size
    difference catches a change the mtime rule would miss. Once we have uploaded a file, it needs no stat.
    """
    manifest = manifest or {}
    targets = {join(options.destination, f.rel) for f in local.files if f.size > 0}
    wanted = []
    for entry in remote:
        if entry.is_dir or entry.read_only or entry.size is not None or entry.hash is not None:
            continue
        if entry.path not in targets:
            continue
        record = manifest.get(entry.path)
        if record is not None and _printer_copy_is_ours(record, entry, options.mtime_tolerance):
            continue
        wanted.append(entry.path)
    return sorted(wanted)


def _compare(
    file: LocalFile,
    remote: RemoteEntry,
    record: ManifestRecord | None,
    options: PlanOptions,
    digest: Digest,
) -> tuple[Op, str, str | None]:
    """Replace or skip one file present on both sides; returns (op, reason, sha256 if it was computed)."""
    if remote.read_only:
        return Op.SKIP, "read-only or transfer in progress", None
    if remote.hash is not None:
        algorithm = remote.hash[0].lower().replace("-", "")
        if algorithm in HASH_ALGORITHMS:
            same = digest(file, algorithm) == remote.hash[1].strip().lower()
            sha256 = digest(file, "sha256") if algorithm == "sha256" else None
            if same:
                return Op.SKIP, f"unchanged ({algorithm} matches)", sha256
            return Op.REPLACE, f"content differs ({algorithm})", sha256
    if remote.size is not None and remote.size != file.size:
        return Op.REPLACE, f"size differs (source {file.size}, printer {remote.size})", None
    if record is not None and _printer_copy_is_ours(record, remote, options.mtime_tolerance):
        sha256 = digest(file, "sha256")
        if sha256 == record.sha256 and file.size == record.size:
            return Op.SKIP, "unchanged (same as our last upload)", sha256
        return Op.REPLACE, "changed since our last upload", sha256
    if remote.mtime:
        if file.mtime > remote.mtime + options.mtime_slack:
            why = f"source is newer ({utc(file.mtime)} > printer {utc(remote.mtime)} + {options.mtime_slack:g} s)"
            return Op.REPLACE, why, None
        return Op.SKIP, f"unchanged (printer copy from {utc(remote.mtime)} is not older)", None
    return Op.SKIP, "unchanged (the printer gives no size, hash or time to compare)", None


def _printer_copy_is_ours(record: ManifestRecord, remote: RemoteEntry, tolerance: float) -> bool:
    """Whether every fact the printer gives matches what we recorded at upload (no facts: trust the record)."""
    if remote.size is not None and remote.size != record.size:
        return False
    if remote.mtime is not None and record.mtime is not None:
        return abs(remote.mtime - record.mtime) <= tolerance
    return True
