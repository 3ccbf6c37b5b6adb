"""``farmsync gcode --pull``: copy files that exist only on printers back into the master folder.

The mirror deletes printer files the master lacks; a pull keeps them instead (a print sliced at one printer, a file
uploaded by hand through a printer's UI). It never writes to a printer and never overwrites a master file.

Per selected printer, like the mirror: build the back end -> status (busy -> deferred) -> list the destination.
Then, for every printer file under the destination with a mirrored suffix, keyed by its master path:

- **in the master already**: compared with the master copy, cheapest evidence first: the printer's content hash
  (OctoPrint's sha1); our manifest, when the printer copy is still what farmsync uploaded (then a different master
  file only means the master moved on: *stale*, not a conflict, the mirror replaces it); sizes (Buddy lists none,
  so one ``stat`` each); and when sizes tie, the printer copy is downloaded to a temporary file and hashed. A
  difference is a **conflict**: both sides are reported, nothing is written.
- **on one printer only**: pulled.
- **on several printers**: pulled once if every copy holds the same content, else a **conflict**. Same content
  means equal hashes where every printer reports one of one algorithm, else equal sizes (``stat`` where the
  listing has none) *and* equal sha256 of each copy downloaded to a temporary file. Different sizes settle it
  without downloading anything.

Downloads stream to a hidden temporary file beside the target (``.<name>.<random>.farmsync-part``), are checked
against the printer's size (and hash, where it gives one), get the printer's time as mtime, and are put in place
with a hard link that fails if the target exists (a plain rename where the file system has no hard links), so a
file that appears in the master meanwhile is never overwritten. A dry run downloads only what a comparison needs,
into a temporary folder outside the master, and writes nothing to the master.

Names from a printer are untrusted: absolute paths, ``.``/``..`` components, backslashes, control characters and
anything that would resolve outside the master folder (through a symlinked master subfolder, say) are rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from farmsync.errors import FarmsyncError, InputError, UpstreamError, UpstreamNotFound, UpstreamTransportError
from farmsync.gcode.backends.base import PrinterBackend, RemoteEntry
from farmsync.gcode.backends.common import UPLOAD_RETRY
from farmsync.gcode.config import PrinterConfig
from farmsync.gcode.engine import BackendFactory, MirrorContext, MirrorOptions, describe, destination_for
from farmsync.gcode.local import CHUNK, DigestCache, scan_local
from farmsync.gcode.manifest import ManifestRecord, ManifestStore
from farmsync.gcode.paths import in_scope, join, path_problem
from farmsync.gcode.plan import (
    HASH_ALGORITHMS,
    MTIME_TOLERANCE,
    LocalFile,
    LocalTree,
    PathProblem,
    has_suffix,
    is_hidden,
    normalize_destination,
)
from farmsync.gcode.pull_report import (
    Copy,
    PullConflict,
    PullFileReport,
    PullPrinterReport,
    PullReport,
    PullResult,
)
from farmsync.gcode.report import PrinterOutcome

log = logging.getLogger(__name__)

RETRY = UPLOAD_RETRY
"""Downloads are retried like uploads: 3 attempts, on 408/429/502/503/504 and dropped connections."""
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
PART_SUFFIX = ".farmsync-part"


class DownloadMismatch(FarmsyncError):
    """The downloaded file is not what the printer said it holds (size or hash)."""


@dataclass(eq=False)
class _Printer:
    config: PrinterConfig
    report: PullPrinterReport
    destination: str
    backend: PrinterBackend | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one transfer at a time per printer

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(eq=False)
class _Copy:
    """One printer's copy of one master path, and what we learnt about its content."""

    printer: _Printer
    entry: RemoteEntry
    rel: str
    target: Path
    report: PullFileReport
    record: ManifestRecord | None
    sha256: str | None = None
    temp: Path | None = None  # a complete download made for a comparison
    written: int | None = None
    twins: list[_Copy] = field(default_factory=list)  # other printers' identical copies (manifest records)

    @property
    def where(self) -> str:
        return self.printer.name

    def copy_info(self) -> Copy:
        return Copy(
            where=self.where,
            path=self.entry.path,
            size=self.entry.size,
            mtime=self.entry.mtime,
            sha256=self.sha256,
        )


def inside(target: Path, root: Path) -> bool:
    """Whether ``target``, with every symlink that exists resolved, lies strictly inside ``root`` (resolved)."""
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):
        return False
    return resolved != root and resolved.is_relative_to(root)


def hash_file(path: Path, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    hashers = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def place(temp: Path, target: Path) -> bool:
    """Move a finished download into place unless ``target`` exists; False when it does (nothing changed)."""
    try:
        os.link(temp, target)
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system (FAT, some network shares): check, then rename
        if os.path.lexists(target):
            return False
        os.replace(temp, target)
        return True
    temp.unlink()
    return True


def _hash_of(entry: RemoteEntry) -> tuple[str, str] | None:
    if entry.hash is None:
        return None
    algorithm = entry.hash[0].lower().replace("-", "")
    return (algorithm, entry.hash[1].strip().lower()) if algorithm in HASH_ALGORITHMS else None


def _vouched(record: ManifestRecord, entry: RemoteEntry) -> bool:
    """The printer copy still looks like what farmsync uploaded (same rule as the planner)."""
    if entry.size is not None and entry.size != record.size:
        return False
    if entry.mtime is not None and record.mtime is not None:
        return abs(entry.mtime - record.mtime) <= MTIME_TOLERANCE
    return True


def _roots(source: Path, relative_to: Path | None) -> tuple[Path, Path]:
    """(the master folder, the folder master paths are relative to), both resolved."""
    master = source.expanduser().resolve()
    return master, relative_to.expanduser().resolve() if relative_to else master


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _retryable(exc: UpstreamError) -> bool:
    return isinstance(exc, UpstreamTransportError) or exc.retryable or exc.status in RETRY_STATUSES


async def run_pull(
    printers: Sequence[PrinterConfig],
    source: Path,
    options: MirrorOptions,
    context: MirrorContext,
    *,
    excluded: Sequence[PrinterConfig] = (),
    notes: Sequence[str] = (),
) -> PullReport:
    """Pull printer-only files of every printer in ``printers`` into ``source`` (a dry run unless told).

    Raises InputError before contacting any printer when the source or destination is unusable. An empty
    source is fine here: pulling into an empty master is how a farm adopts what its printers hold.
    """
    started = datetime.now(UTC)
    if options.destination is not None:
        try:
            normalize_destination(options.destination)
        except PathProblem as exc:
            raise InputError(f"--destination {options.destination!r} {exc}", field="destination") from None
    tree = await asyncio.to_thread(
        scan_local, Path(source), relative_to=options.relative_to, suffixes=options.suffixes
    )
    master, base_dir = _roots(Path(source), options.relative_to)
    pull = _Pull(tree, master, base_dir, options, context.manifest, context.digests or DigestCache())
    states = [
        _Printer(
            config=p,
            report=PullPrinterReport(name=p.name, kind=p.kind.value, status=PrinterOutcome.FAILED),
            destination=destination_for(p, options),
        )
        for p in printers
    ]
    await pull.run(states, context.backend_factory)
    return PullReport(
        dry_run=options.dry_run,
        source=str(source),
        started_at=started,
        finished_at=datetime.now(UTC),
        printers=[s.report for s in states],
        conflicts=pull.conflicts,
        excluded=[p.name for p in excluded],
        problems=list(tree.problems),
        notes=list(notes),
    )


class _Pull:
    """One pull run: read every printer, decide per master path, then download."""

    def __init__(
        self,
        tree: LocalTree,
        master: Path,
        base_dir: Path,
        options: MirrorOptions,
        manifest: ManifestStore,
        digests: DigestCache,
    ) -> None:
        self.tree = tree
        self.local = {f.rel: f for f in tree.files}
        self.master = master
        self.base_dir = base_dir
        self.options = options
        self.manifest = manifest
        self.digests = digests
        self.conflicts: list[PullConflict] = []
        self.copies: list[_Copy] = []
        self.scratch: Path | None = None
        self.made_dirs: list[Path] = []

    async def run(self, states: list[_Printer], factory: BackendFactory) -> None:
        limit = self.options.concurrency or len(states) or 1
        semaphore = asyncio.Semaphore(limit)

        async def read(state: _Printer) -> None:
            async with semaphore:
                await self._read(state, factory)

        async with AsyncExitStack() as stack:
            if self.options.dry_run:
                self.scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="farmsync-pull-")))
            stack.push_async_callback(self._close, states)
            stack.callback(self._clean_up)
            await asyncio.gather(*(read(s) for s in states))
            await self._decide()
            if not self.options.dry_run:
                await asyncio.gather(*(self._execute(s) for s in states))
        for state in states:
            report = state.report
            report.files.sort(key=lambda f: f.path)
            if report.status is PrinterOutcome.FAILED and report.error is None:
                report.status = PrinterOutcome.DRY_RUN if self.options.dry_run else PrinterOutcome.SYNCED
                if report.failures:
                    report.status = PrinterOutcome.FAILED

    # --- reading ---------------------------------------------------------------------------------------------

    async def _read(self, state: _Printer, factory: BackendFactory) -> None:
        """Status, listing and sizes of one printer; failures land in its report (never raised)."""
        report = state.report
        scope = join(state.destination, self.tree.base)
        report.destination = scope
        try:
            built = factory(state.config)
            state.backend = await built if inspect.isawaitable(built) else built
            backend = state.backend
            assert backend is not None
            try:
                status = await backend.status()
            except Exception as exc:
                if not self.options.ignore_state:
                    raise
                report.state = "unknown"
                report.warnings.append(
                    f"status unavailable ({describe(exc)}); going on because of --ignore-state"
                )
            else:
                report.state = status.state
                if not status.idle and not self.options.ignore_state:
                    report.status = PrinterOutcome.DEFERRED
                    return
            try:
                entries = list(await backend.list_tree(scope))
            except UpstreamNotFound:
                if not scope:
                    raise
                entries = []  # the destination folder does not exist: nothing to pull
            skipped = getattr(backend, "skipped", None) or []
            report.warnings.extend(
                line.removeprefix(f"{state.name}: ") for line in skipped if isinstance(line, str)
            )
            records = await asyncio.to_thread(self.manifest.load, state.name)
            for entry in entries:
                if not entry.is_dir:
                    self._classify(state, entry, scope, records)
            await self._fill_sizes(state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("printer %s failed", state.name, exc_info=True)
            report.error = describe(exc)
            report.status = PrinterOutcome.FAILED
            self.copies = [c for c in self.copies if c.printer is not state]

    def _classify(
        self, state: _Printer, entry: RemoteEntry, scope: str, records: dict[str, ManifestRecord]
    ) -> None:
        path = entry.path
        file = PullFileReport(path=path, size=entry.size, mtime=entry.mtime, result=PullResult.SKIPPED)
        problem = path_problem(path)
        if problem is not None:
            file.result, file.reason = PullResult.REJECTED, f"unsafe name from the printer: {problem}"
            state.report.files.append(file)
            return
        if not in_scope(path, scope) or path == scope:
            return  # not under the destination: never ours
        rel = path[len(state.destination) + 1 :] if state.destination else path
        file.target = rel
        if is_hidden(rel):
            file.reason = "hidden name"
        elif not has_suffix(rel, self.options.suffixes):
            file.reason = "not a mirrored file type"
        elif entry.read_only:
            file.reason = "read-only or transfer in progress"
        elif not inside(self.base_dir / rel, self.master):
            file.result, file.reason = PullResult.REJECTED, "would land outside the master folder"
        else:
            self.copies.append(_Copy(state, entry, rel, self.base_dir / rel, file, records.get(path)))
        state.report.files.append(file)

    async def _fill_sizes(self, state: _Printer) -> None:
        """``stat`` the copies whose listing gave no size (Buddy), unless our manifest already vouches."""
        stat = getattr(state.backend, "stat", None)
        if stat is None:
            return
        for copy in [c for c in self.copies if c.printer is state]:
            entry = copy.entry
            if entry.size is not None or _hash_of(entry) is not None:
                continue
            if copy.rel in self.local and copy.record is not None and _vouched(copy.record, entry):
                continue
            try:
                found = await stat(entry.path)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("stat %s failed", entry.path, exc_info=True)
                continue
            if found is not None and found.size is not None:
                copy.entry = RemoteEntry(
                    path=entry.path,
                    is_dir=False,
                    size=found.size,
                    mtime=entry.mtime if entry.mtime is not None else found.mtime,
                    hash=entry.hash,
                    read_only=entry.read_only,
                    ref=entry.ref,
                    download_ref=entry.download_ref or found.download_ref,
                )
                copy.report.size = found.size

    # --- deciding --------------------------------------------------------------------------------------------

    async def _decide(self) -> None:
        groups: dict[str, list[_Copy]] = {}
        for copy in self.copies:
            groups.setdefault(copy.rel, []).append(copy)
        for rel in sorted(groups):
            copies = sorted(groups[rel], key=lambda c: c.where.casefold())
            local = self.local.get(rel)
            if local is not None:
                await self._against_master(rel, local, copies)
            elif await asyncio.to_thread(os.path.lexists, self.base_dir / rel):
                self._conflict(
                    rel,
                    "the master holds something that is not a mirrored file at this path",
                    copies,
                    [Copy(where="master", path=rel)],
                )
            else:
                await self._printer_only(rel, copies)

    async def _against_master(self, rel: str, local: LocalFile, copies: list[_Copy]) -> None:
        differing: list[tuple[_Copy, str]] = []
        for copy in copies:
            try:
                verdict, why = await self._versus_master(copy, local)
            except Exception as exc:
                self._failed(copy, f"could not compare with the master: {describe(exc)}")
                continue
            copy.report.source = "master"
            if verdict == "same":
                copy.report.reason = f"in the master already ({why})"
            elif verdict == "stale":
                copy.report.reason = f"an older version farmsync uploaded ({why}); the mirror replaces it"
            else:
                differing.append((copy, why))
        if differing:
            master_sha = await asyncio.to_thread(self._known_sha256, local)
            master_copy = Copy(
                where="master", path=rel, size=local.size, mtime=local.mtime, sha256=master_sha
            )
            self._conflict(
                rel,
                "the master holds a different file at this path",
                [c for c, _ in differing],
                [master_copy],
                reasons={id(c): f"differs from the master's copy ({why})" for c, why in differing},
            )

    async def _versus_master(self, copy: _Copy, local: LocalFile) -> tuple[str, str]:
        """("same" | "stale" | "differs", why) for one printer copy of a file the master has."""
        entry = copy.entry
        known = _hash_of(entry)
        if known is not None:
            algorithm, value = known
            ours = await asyncio.to_thread(self.digests, local, algorithm)
            return ("same", f"{algorithm} matches") if ours == value else ("differs", f"{algorithm} differs")
        if copy.record is not None and _vouched(copy.record, entry):
            sha256 = await asyncio.to_thread(self.digests, local, "sha256")
            if sha256 == copy.record.sha256 and local.size == copy.record.size:
                return "same", "same as farmsync's last upload"
            return "stale", "the printer copy is still farmsync's upload of an earlier master file"
        if entry.size is not None and entry.size != local.size:
            return "differs", f"printer {entry.size} bytes, master {local.size} bytes"
        printer_sha = await self._content_sha256(copy)
        sha256 = await asyncio.to_thread(self.digests, local, "sha256")
        if printer_sha == sha256:
            return "same", "sha256 matches"
        return "differs", "same size, different content (sha256)"

    async def _printer_only(self, rel: str, copies: list[_Copy]) -> None:
        if len(copies) == 1:
            self._plan(copies[0], "only on this printer")
            return
        sizes = {c.entry.size for c in copies if c.entry.size is not None}
        if len(sizes) > 1:
            self._conflict(rel, "printers hold files of different sizes at this path", copies)
            return
        hashes = [h for h in (_hash_of(c.entry) for c in copies) if h is not None]
        if len(hashes) == len(copies) and len({algorithm for algorithm, _ in hashes}) == 1:
            same = len({value for _, value in hashes}) == 1
            why = f"{hashes[0][0]} of each copy compared"
        else:
            for copy in copies:
                try:
                    await self._content_sha256(copy)
                except Exception as exc:
                    self._failed(copy, f"could not download it to compare: {describe(exc)}")
                    for other in copies:
                        if other is not copy and other.report.result is PullResult.SKIPPED:
                            other.report.reason = f"not pulled: {copy.where}'s copy could not be compared"
                    return
            same = len({c.sha256 for c in copies}) == 1
            why = "sha256 of each copy compared"
        if not same:
            self._conflict(rel, "printers hold different files at this path", copies)
            return
        winner = next((c for c in copies if c.temp is not None), copies[0])
        winner.twins = [c for c in copies if c is not winner]
        self._plan(winner, f"on {len(copies)} printers with the same content ({why})")
        for twin in winner.twins:
            twin.report.source = winner.where
            twin.report.reason = f"same content as {winner.where}'s copy, which is pulled"

    def _plan(self, copy: _Copy, why: str) -> None:
        copy.report.result = PullResult.PLANNED
        copy.report.source = copy.where
        copy.report.reason = why

    def _conflict(
        self,
        rel: str,
        reason: str,
        copies: list[_Copy],
        extra: Sequence[Copy] = (),
        *,
        reasons: dict[int, str] | None = None,
    ) -> None:
        self.conflicts.append(
            PullConflict(target=rel, reason=reason, copies=[*extra, *(c.copy_info() for c in copies)])
        )
        for copy in copies:
            copy.report.result = PullResult.CONFLICT
            copy.report.reason = (reasons or {}).get(id(copy), reason)
            copy.report.sha256 = copy.sha256

    def _failed(self, copy: _Copy, error: str) -> None:
        copy.report.result = PullResult.FAILED
        copy.report.error = error

    def _known_sha256(self, local: LocalFile) -> str | None:
        try:
            return self.digests(local, "sha256")
        except OSError:
            return None

    # --- downloading -----------------------------------------------------------------------------------------

    def _temp_for(self, copy: _Copy) -> Path:
        """Beside the target on a real run (same file system, so the final step is a rename); in the scratch
        folder on a dry run, which must leave the master untouched."""
        token = secrets.token_hex(4)
        if self.scratch is not None:
            return self.scratch / f"{token}{PART_SUFFIX}"
        self._make_parents(copy.target)
        return copy.target.parent / f".{copy.target.name}.{token}{PART_SUFFIX}"

    def _make_parents(self, target: Path) -> None:
        missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            self.made_dirs.append(folder)
        if not inside(target, self.master):
            raise InputError(f"{target} would land outside the master folder", field="path")

    async def _download(self, copy: _Copy, dest: Path) -> int:
        """One download with the upload retry policy; a failed attempt leaves no file behind."""
        backend = copy.printer.backend
        assert backend is not None
        attempt = 1
        async with copy.printer.lock:
            while True:
                try:
                    return await backend.download(copy.entry, dest)
                except UpstreamError as exc:
                    _discard(dest)
                    if attempt >= RETRY.attempts or not _retryable(exc):
                        raise
                except BaseException:
                    _discard(dest)
                    raise
                await asyncio.sleep(RETRY.delay(attempt))
                attempt += 1

    async def _content_sha256(self, copy: _Copy) -> str:
        """The sha256 of the printer copy, downloading it once (the download is kept for the pull)."""
        if copy.sha256 is None:
            temp = self._temp_for(copy)
            written = await self._download(copy, temp)
            copy.temp, copy.written = temp, written
            digests = await asyncio.to_thread(hash_file, temp)
            copy.sha256 = digests["sha256"]
            copy.report.sha256 = copy.sha256
        return copy.sha256

    async def _execute(self, state: _Printer) -> None:
        for copy in [c for c in self.copies if c.printer is state]:
            if copy.report.result is PullResult.PLANNED:
                await self._pull(copy)

    async def _pull(self, copy: _Copy) -> None:
        """Download (unless a comparison did), verify, and put in place without overwriting anything."""
        started = time.perf_counter()
        report = copy.report
        try:
            if copy.temp is None:
                temp = self._temp_for(copy)
                copy.written = await self._download(copy, temp)
                copy.temp = temp
            temp = copy.temp
            expected = copy.entry.size
            if expected is None:
                raise DownloadMismatch("the printer gave no size to check the download against; not placed")
            actual = temp.stat().st_size
            if copy.written != expected or actual != expected:
                raise DownloadMismatch(f"downloaded {actual} bytes, the printer lists {expected}; not placed")
            known = _hash_of(copy.entry)
            wanted = ["sha256"] + ([known[0]] if known and known[0] != "sha256" else [])
            digests = await asyncio.to_thread(hash_file, temp, wanted)
            if known is not None and digests[known[0]] != known[1]:
                raise DownloadMismatch(f"the download's {known[0]} differs from the printer's; not placed")
            copy.sha256 = report.sha256 = digests["sha256"]
            if copy.entry.mtime:
                os.utime(temp, (copy.entry.mtime, copy.entry.mtime))
            if await asyncio.to_thread(place, temp, copy.target):
                copy.temp = None
                report.result = PullResult.PULLED
                await self._remember(copy)
            else:
                await self._appeared(copy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("pull %s from %s failed", copy.entry.path, copy.where, exc_info=True)
            self._failed(copy, describe(exc))
        finally:
            report.seconds = round(time.perf_counter() - started, 3)

    async def _appeared(self, copy: _Copy) -> None:
        """The target showed up in the master during the run: same content is fine, else a conflict."""
        try:
            existing = (await asyncio.to_thread(hash_file, copy.target))["sha256"]
        except OSError:
            existing = None
        if existing == copy.sha256:
            copy.report.result = PullResult.SKIPPED
            copy.report.reason = "appeared in the master during the run, with the same content"
            return
        info = copy.target.stat() if copy.target.exists() else None
        master = Copy(
            where="master",
            path=copy.rel,
            size=info.st_size if info else None,
            mtime=info.st_mtime if info else None,
            sha256=existing,
        )
        self._conflict(copy.rel, "a different file appeared in the master during the run", [copy], [master])

    async def _remember(self, copy: _Copy) -> None:
        """Manifest records for every printer holding this content, so the next mirror uploads nothing there."""
        if copy.sha256 is None or copy.entry.size is None:
            return
        for holder in [copy, *copy.twins]:
            record = ManifestRecord(sha256=copy.sha256, size=copy.entry.size, mtime=holder.entry.mtime)
            try:
                await asyncio.to_thread(self.manifest.save, holder.where, holder.entry.path, record)
            except Exception as exc:
                holder.printer.report.warnings.append(
                    f"manifest not updated for {holder.entry.path!r}: {describe(exc)}"
                )

    # --- clean-up --------------------------------------------------------------------------------------------

    async def _close(self, states: list[_Printer]) -> None:
        for state in states:
            if state.backend is not None:
                with contextlib.suppress(Exception):
                    await state.backend.aclose()

    def _clean_up(self) -> None:
        """Remove unused downloads and the folders made for them, deepest first, only when left empty."""
        for copy in self.copies:
            if copy.temp is not None:
                copy.temp.unlink(missing_ok=True)
                copy.temp = None
        for folder in sorted(set(self.made_dirs), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
