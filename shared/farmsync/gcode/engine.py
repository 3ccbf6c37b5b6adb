"""Runs the mirror on many printers at once: one asyncio task per printer, one transfer at a time within each.

Every selected printer starts at once unless ``concurrency`` caps it (no thread pool capped at the CPU count,
no printer contacted before the run starts), excluded printers are never contacted, and a printer that is
unreachable or misconfigured fails only itself. Timeouts belong to the
back ends (each request has one), so a hung printer cannot hold the others back.

Per printer: build the back end -> status (busy -> deferred) -> list the destination -> plan -> execute the writes
in plan order, recording a result for every action. A dry run stops after the plan. On a back end with
``early_replace`` (Buddy), files the source changed since our last upload there are stat'ed and replaced first,
with the listing running beside the transfer; the plan then leaves them alone.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from farmsync.errors import (
    FarmsyncError,
    InputError,
    UpstreamAuthError,
    UpstreamConflict,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTransportError,
)
from farmsync.gcode.backends.base import PrinterBackend, PrinterStatus, RemoteEntry
from farmsync.gcode.config import PrinterConfig
from farmsync.gcode.local import DigestCache, scan_local
from farmsync.gcode.manifest import ManifestRecord, ManifestStore
from farmsync.gcode.paths import in_scope, join
from farmsync.gcode.plan import (
    DEFAULT_SUFFIXES,
    Action,
    LocalTree,
    Op,
    PathProblem,
    Plan,
    PlanOptions,
    changed_since_upload,
    early_replace,
    has_suffix,
    make_plan,
    normalize_destination,
    normalize_suffixes,
    paths_needing_size,
)
from farmsync.gcode.report import ActionReport, ActionResult, MirrorReport, PrinterOutcome, PrinterReport
from farmsync.offload import Offload, batched, store_call

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")

BackendFactory = Callable[[PrinterConfig], PrinterBackend | Awaitable[PrinterBackend]]
"""Builds the back end of one printer (sync or async). Called only for selected printers."""


class Guard(Protocol):
    """One object around every printer write of a run (:class:`farmsync.gcode.guard.WriteGuard` is the store's).

    ``allow`` is asked before each write: False skips it (written meanwhile by another run, or being written by
    one now). After a write it let through, exactly one of ``done`` (the write succeeded) or ``failed`` (it did
    not) is called, so whatever ``allow`` took (a lock) can be given back.
    """

    async def allow(self, printer: str, action: Action) -> bool: ...

    async def done(self, printer: str, action: Action, report: ActionReport) -> None: ...

    async def failed(self, printer: str, action: Action, report: ActionReport) -> None: ...


class MirrorOptions(BaseModel):
    """How to mirror. ``destination`` None means each printer's ``destination`` key, else the storage root."""

    model_config = ConfigDict(frozen=True)

    destination: str | None = None
    relative_to: Path | None = None
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    dry_run: bool = True
    ignore_state: bool = False
    concurrency: int | None = Field(default=None, ge=0)  # printers at once; None or 0: all of them
    allow_empty_source: bool = False  # an empty source would delete everything under the destination
    mtime_slack: float = 60.0

    @field_validator("suffixes", mode="before")
    @classmethod
    def _suffixes(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a suffix or a list of suffixes, e.g. .gcode")
        suffixes = normalize_suffixes(value)
        if not suffixes:
            raise ValueError("at least one suffix is needed")
        return suffixes


class MirrorListener:
    """Hooks for live display (the CLI's progress bars). Every method may be called from the event loop only."""

    def printer_started(self, printer: str) -> None: ...

    def printer_planned(self, printer: str, plan: Plan, *, dry_run: bool) -> None:
        """A plan's actions are about to run (or, in a dry run, are all there is). Called twice for a printer
        with early replaces: first with those, then with the rest of the plan; no action is in both."""

    def action_started(self, printer: str, action: Action) -> None: ...

    def progress(self, printer: str, action: Action, nbytes: int) -> None: ...

    def action_finished(self, printer: str, action: Action, report: ActionReport) -> None: ...

    def printer_finished(self, report: PrinterReport) -> None: ...


class SafeListener(MirrorListener):
    """Passes every hook on to ``inner`` but never lets a display bug fail an upload: the first error is logged
    and the display is switched off for the rest of the run (the report still has everything)."""

    def __init__(self, inner: MirrorListener) -> None:
        self.inner: MirrorListener | None = inner

    def _call(self, name: str, *args: object, **kwargs: object) -> None:
        if self.inner is None:
            return
        try:
            getattr(self.inner, name)(*args, **kwargs)
        except Exception:
            log.warning("progress display failed; going on without it", exc_info=True)
            self.inner = None

    def printer_started(self, printer: str) -> None:
        self._call("printer_started", printer)

    def printer_planned(self, printer: str, plan: Plan, *, dry_run: bool) -> None:
        self._call("printer_planned", printer, plan, dry_run=dry_run)

    def action_started(self, printer: str, action: Action) -> None:
        self._call("action_started", printer, action)

    def progress(self, printer: str, action: Action, nbytes: int) -> None:
        self._call("progress", printer, action, nbytes)

    def action_finished(self, printer: str, action: Action, report: ActionReport) -> None:
        self._call("action_finished", printer, action, report)

    def printer_finished(self, report: PrinterReport) -> None:
        self._call("printer_finished", report)


def describe(exc: BaseException) -> str:
    """One line for a report: farmsync errors carry their own wording (never secrets); others get their type."""
    text = str(exc).strip()
    if isinstance(exc, FarmsyncError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class MirrorContext:
    """What a mirror (or pull) run works with besides its options: the printers' back ends, the upload manifest,
    the write guard, the cache of local file hashes and the live display. :mod:`farmsync.gcode.service` builds
    the one the command line, the tick and the routes share (store manifest, store guard, DATA_DIR's cache)."""

    backend_factory: BackendFactory
    manifest: ManifestStore
    guard: Guard | None = None
    digests: DigestCache | None = None
    listener: MirrorListener | None = None


@dataclass
class _Run:
    """What every printer task of one run shares."""

    tree: LocalTree
    options: MirrorOptions
    backend_factory: BackendFactory
    manifest: ManifestStore
    digests: DigestCache
    listener: MirrorListener
    guard: Guard | None
    manifest_call: Offload
    """How this run calls its manifest off the loop (shared trips on a local store)."""


@dataclass
class _Writer:
    """One printer's writes in a run: what every step of :func:`_execute` needs. ``fatal`` holds the first
    transport or auth failure's description once there is one (the early replaces and the plan share it);
    ``errors`` each failed write's exception by path."""

    run: _Run
    name: str
    backend: PrinterBackend
    report: PrinterReport
    fatal: list[str] = field(default_factory=list)
    errors: dict[str, Exception] = field(default_factory=dict)


async def run_mirror(
    printers: Sequence[PrinterConfig],
    source: Path,
    options: MirrorOptions,
    context: MirrorContext,
    *,
    excluded: Sequence[PrinterConfig] = (),
    notes: Sequence[str] = (),
) -> MirrorReport:
    """Mirror ``source`` onto every printer in ``printers`` (already selected; ``excluded`` only for the report).

    Raises InputError before contacting any printer when the source or destination is unusable, or when the
    source holds no files and ``allow_empty_source`` is off.
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
    if not tree.files and not options.allow_empty_source:
        raise InputError(
            f"source {str(source)!r} holds no {'/'.join(options.suffixes)} files; mirroring it would delete "
            "every file under the destination (pass --allow-empty-source to do that)",
            field="source",
        )
    listener = context.listener
    run = _Run(
        tree=tree,
        options=options,
        backend_factory=context.backend_factory,
        manifest=context.manifest,
        digests=context.digests or DigestCache(),
        listener=SafeListener(listener) if listener is not None else MirrorListener(),
        guard=context.guard,
        manifest_call=store_call(context.manifest),
    )
    limit = options.concurrency or len(printers) or 1
    semaphore = asyncio.Semaphore(limit)

    async def one(printer: PrinterConfig) -> PrinterReport:
        async with semaphore:
            return await _mirror_printer(run, printer)

    reports = await asyncio.gather(*(one(p) for p in printers))
    await asyncio.to_thread(run.digests.save)
    return MirrorReport(
        dry_run=options.dry_run,
        source=str(source),
        started_at=started,
        finished_at=datetime.now(UTC),
        printers=list(reports),
        excluded=[p.name for p in excluded],
        problems=list(tree.problems),
        notes=list(notes),
    )


def destination_for(printer: PrinterConfig, options: MirrorOptions) -> str:
    """The CLI's ``--destination`` wins; else the printer's own ``destination`` key; else the storage root."""
    chosen = options.destination if options.destination is not None else printer.destination
    return normalize_destination(chosen, storage=printer.storage)


async def _mirror_printer(run: _Run, printer: PrinterConfig) -> PrinterReport:
    """Everything for one printer; never raises (except cancellation): failures land in the report."""
    name = printer.name
    destination = destination_for(printer, run.options)
    report = PrinterReport(
        name=name,
        kind=printer.kind.value,
        status=PrinterOutcome.FAILED,
        destination=join(destination, run.tree.base),
    )
    run.listener.printer_started(name)
    try:
        async with AsyncExitStack() as stack:
            backend = await _build(run.backend_factory, printer)
            stack.push_async_callback(_close_quietly, backend)
            status = await _status(backend, run.options, report)
            if status is not None and not status.idle and not run.options.ignore_state:
                report.status = PrinterOutcome.DEFERRED
                return report
            records = await run.manifest_call(run.manifest.load, name)
            options = PlanOptions(
                destination=destination, suffixes=run.options.suffixes, mtime_slack=run.options.mtime_slack
            )
            tree = _accepted(run.tree, backend)
            early = Plan.of(destination, ())
            if not run.options.dry_run and getattr(backend, "early_replace", False):
                early = await _early_plan(run, backend, tree, records, options)
            writer = _Writer(run, name, backend, report)
            handled, (remote, plan) = await _list_and_replace_early(writer, early, tree, records, options)
            plan = plan.without(handled)
            report.warnings.extend(plan.warnings)
            run.listener.printer_planned(name, plan, dry_run=run.options.dry_run)
            if run.options.dry_run:
                report.actions = [_planned(a) for a in plan.actions]
                report.status = PrinterOutcome.DRY_RUN
                return report
            await _forget_vanished(run, name, records, remote, report, keep=handled)
            await _execute(writer, plan)
            report.status = PrinterOutcome.FAILED if report.failures else PrinterOutcome.SYNCED
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("printer %s failed", name, exc_info=True)
        report.error = describe(exc)
        report.status = PrinterOutcome.FAILED
    finally:
        run.listener.printer_finished(report)
    return report


async def _list_and_replace_early(
    writer: _Writer,
    early: Plan,
    tree: LocalTree,
    records: dict[str, ManifestRecord],
    options: PlanOptions,
) -> tuple[set[str], tuple[list[RemoteEntry], Plan]]:
    """The printer's tree and the plan made from it, both while the early replaces run; and the paths those
    settled (the plan leaves them alone). The listing waits until the first replace has bytes on the wire, so
    every printer's transfer starts before the farm's listings take the CPU, and the listing and the plan fill
    the transfer's time rather than follow it: at a farm's end every printer's transfer finishes at once, and
    what each still has to do then is what the last one waits for."""
    run, backend, report = writer.run, writer.backend, writer.report
    early_paths = early.paths
    on_wire = asyncio.Event()

    async def listing() -> tuple[list[RemoteEntry], Plan]:
        await on_wire.wait()
        remote = await _list(backend, report.destination)
        report.warnings.extend(_backend_skipped(backend, writer.name))
        needed = paths_needing_size(tree, remote, options, records)
        remote = await _fill_sizes(backend, remote, [p for p in needed if p not in early_paths])
        return remote, await batched(make_plan, tree, remote, options, digest=run.digests, manifest=records)

    if not early.actions:
        on_wire.set()
        return set(), await listing()
    run.listener.printer_planned(writer.name, early, dry_run=False)
    return await _alongside(_execute_early(writer, early, on_wire), listing())


async def _early_plan(
    run: _Run,
    backend: PrinterBackend,
    tree: LocalTree,
    records: dict[str, ManifestRecord],
    options: PlanOptions,
) -> Plan:
    """Replaces that need no listing: source files changed since our last upload here, each confirmed by one
    stat of the printer's copy. A back end sets ``early_replace`` where listing is slow (Buddy: a GET per
    folder, none of them with sizes), so one changed file starts on the wire before the walk of every folder.

    The plan's order (deletes first, to free space) is kept by :func:`_execute_early`: a replace the drive has
    no room for goes back to the plan. A stat that fails leaves its file to the plan as well.
    """
    changed = await batched(changed_since_upload, tree, options, records, digest=run.digests)
    actions = []
    for file, record in changed:
        try:
            remote = await backend.stat(join(options.destination, file.rel))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("stat of %s failed; the plan decides", file.rel, exc_info=True)
            continue
        action = await batched(early_replace, file, remote, record, options, digest=run.digests)
        if action is not None:
            actions.append(action)
    return Plan.of(options.destination, actions)


async def _execute_early(writer: _Writer, plan: Plan, on_wire: asyncio.Event) -> set[str]:
    """Run the early replaces, setting ``on_wire`` at their first bytes sent (or when they end without any);
    return the paths they settled. One the drive had no room for (507) is taken out of the report and left to
    the plan, whose deletes come first and may make the room."""
    report = writer.report
    before = len(report.actions)
    early = replace(
        writer, run=replace(writer.run, listener=_OnTheWire(writer.run.listener, on_wire)), errors={}
    )
    try:
        await _execute(early, plan)
    finally:
        on_wire.set()
    full = {
        path
        for path, error in early.errors.items()
        if isinstance(error, UpstreamError) and error.status == 507
    }
    if full:
        report.actions[before:] = [a for a in report.actions[before:] if a.path not in full]
    return set(plan.paths) - full


class _OnTheWire(SafeListener):
    """Passes every hook on, and sets ``event`` at the first bytes an upload hands to the socket."""

    def __init__(self, inner: MirrorListener, event: asyncio.Event) -> None:
        super().__init__(inner)
        self.event = event

    def progress(self, printer: str, action: Action, nbytes: int) -> None:
        self.event.set()
        super().progress(printer, action, nbytes)


async def _alongside(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Run both; ``second`` failing still waits for ``first`` (a transfer under way is finished, not cut)."""
    task = asyncio.ensure_future(first)
    try:
        result = await second
    except asyncio.CancelledError:
        task.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await task
        raise
    except Exception:
        with suppress(Exception):
            await task
        raise
    return await task, result


def _accepted(tree: LocalTree, backend: PrinterBackend) -> LocalTree:
    """The source files this printer can hold: a back end's ``accepts`` suffixes (Bambu: .3mf and .gcode; Buddy:
    no .3mf) narrow a run that mirrors several file types onto a mixed farm. Without ``accepts``, all of them."""
    accepts = getattr(backend, "accepts", None)
    if not accepts:
        return tree
    return replace(tree, files=tuple(f for f in tree.files if has_suffix(f.rel, accepts)))


async def _build(factory: BackendFactory, printer: PrinterConfig) -> PrinterBackend:
    backend = factory(printer)
    if inspect.isawaitable(backend):
        backend = await backend
    return backend


async def _close_quietly(backend: PrinterBackend) -> None:
    with suppress(Exception):
        await backend.aclose()


async def _status(
    backend: PrinterBackend, options: MirrorOptions, report: PrinterReport
) -> PrinterStatus | None:
    """The printer's state. With --ignore-state a failed status call is a warning, not a failure."""
    try:
        status = await backend.status()
    except Exception as exc:
        if not options.ignore_state:
            raise
        report.state = "unknown"
        report.warnings.append(f"status unavailable ({describe(exc)}); going on because of --ignore-state")
        return None
    report.state = status.state
    if status.detail and not status.idle:
        report.warnings.append(status.detail)
    return status


async def _list(backend: PrinterBackend, root: str) -> list[RemoteEntry]:
    """The printer's tree under ``root``; a destination that does not exist yet is simply empty."""
    try:
        return list(await backend.list_tree(root))
    except UpstreamNotFound:
        if not root:
            raise
        return []


def _backend_skipped(backend: PrinterBackend, name: str) -> list[str]:
    """Entries the back end left out of its listing as unsafe (``backend.skipped``), without the name prefix."""
    lines = getattr(backend, "skipped", None) or []
    return [line.removeprefix(f"{name}: ") for line in lines if isinstance(line, str)]


async def _fill_sizes(
    backend: PrinterBackend, remote: list[RemoteEntry], paths: list[str]
) -> list[RemoteEntry]:
    """Ask the printer for the sizes its listing left out, one file at a time; a failed stat just leaves None."""
    stat = getattr(backend, "stat", None)
    if not paths or stat is None:
        return remote
    sizes: dict[str, int] = {}
    for path in paths:
        try:
            entry = await stat(path)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("stat %s failed", path, exc_info=True)
            continue
        if entry is not None and entry.size is not None:
            sizes[path] = entry.size
    return [replace(e, size=sizes[e.path]) if e.path in sizes else e for e in remote]


def _planned(action: Action) -> ActionReport:
    result = ActionResult.PLANNED if action.is_write else ActionResult.SKIPPED
    return ActionReport(
        op=action.op.value, path=action.path, size=action.size, result=result, reason=action.reason
    )


async def _forget_vanished(
    run: _Run,
    name: str,
    records: dict[str, ManifestRecord],
    remote: list[RemoteEntry],
    report: PrinterReport,
    *,
    keep: set[str],
) -> None:
    """Drop manifest records of files no longer on the printer (deleted by hand, or by a card swap); ``keep``
    are files written during the listing, which may have missed them."""
    present = {e.path for e in remote if not e.is_dir}
    for path in sorted(records):
        if in_scope(path, report.destination) and path not in present and path not in keep:
            try:
                await run.manifest_call(run.manifest.forget, name, path)
            except Exception as exc:
                report.warnings.append(f"manifest: could not forget {path!r}: {describe(exc)}")
                return


UPLOAD_OPS = frozenset({Op.UPLOAD, Op.REPLACE})


async def _execute(writer: _Writer, plan: Plan) -> None:
    """Do the writes in plan order. After a transport or auth failure (``writer.fatal``) the rest are not
    attempted.

    A run of consecutive uploads goes through :func:`_upload_batch`, which keeps the printer's link busy: a back
    end with ``upload_pipeline`` > 1 lets the next file's transfer start while the last one is verified and
    recorded (it still transfers one file at a time itself).
    """
    depth = max(1, int(getattr(writer.backend, "upload_pipeline", 1)))
    actions = plan.actions
    index = 0
    while index < len(actions):
        end = index + 1
        if depth > 1 and actions[index].op in UPLOAD_OPS:
            while end < len(actions) and actions[end].op in UPLOAD_OPS:
                end += 1
        batch = actions[index:end]
        index = end
        if len(batch) > 1:
            writer.report.actions.extend(await _upload_batch(writer, batch, depth))
        else:
            writer.report.actions.append(await _one_action(writer, batch[0]))


async def _upload_batch(writer: _Writer, batch: Sequence[Action], depth: int) -> list[ActionReport]:
    """Uploads with at most ``depth`` under way at once, reported in plan order (two neighbours may reach the
    printer in either order: each first hashes its file and asks the guard). A transport or auth failure stops
    the ones not yet started; the one already under way beside it finishes."""
    slots = asyncio.Semaphore(depth)

    async def one(action: Action) -> ActionReport:
        async with slots:
            return await _one_action(writer, action)

    return list(await asyncio.gather(*(one(action) for action in batch)))


async def _one_action(writer: _Writer, action: Action) -> ActionReport:
    fatal = writer.fatal
    if not action.is_write or fatal:  # a skip in the plan, or a write not attempted after a fatal failure
        return ActionReport(
            op=action.op.value,
            path=action.path,
            size=action.size,
            result=ActionResult.SKIPPED,
            reason=action.reason,
            error=f"not attempted after an earlier failure: {fatal[0]}" if action.is_write else None,
        )
    outcome, error = await _write(writer, action)
    if error is not None:
        writer.errors[action.path] = error
    if isinstance(error, UpstreamTransportError | UpstreamAuthError) and not fatal:
        fatal.append(describe(error))
    return outcome


async def _write(writer: _Writer, action: Action) -> tuple[ActionReport, Exception | None]:
    """One write with guard, timing, manifest update and done hook."""
    run, name, report = writer.run, writer.name, writer.report
    run.listener.action_started(name, action)
    started = time.perf_counter()
    outcome = ActionReport(
        op=action.op.value,
        path=action.path,
        size=action.size,
        result=ActionResult.FAILED,
        reason=action.reason,
    )
    error: Exception | None = None
    guard = run.guard
    guarded = False  # the guard let this write through and neither done nor failed has run for it yet
    try:
        if action.op in (Op.UPLOAD, Op.REPLACE) and action.sha256 is None and action.local is not None:
            action = replace(action, sha256=await batched(run.digests, action.local, "sha256"))
        if guard is not None and not await guard.allow(name, action):
            outcome.result = ActionResult.SKIPPED
            outcome.reason = "skipped by the write guard (written meanwhile or being written by another run)"
            return outcome, None
        guarded = guard is not None
        outcome.result = await _perform(writer, action, outcome)
        outcome.seconds = round(time.perf_counter() - started, 3)
        ok = outcome.result is ActionResult.OK
        if guard is not None:
            guarded = False
            try:
                await (guard.done if ok else guard.failed)(name, action, outcome)
            except Exception as exc:
                which = "done" if ok else "failed"
                report.warnings.append(f"{action.path}: {which} hook failed: {describe(exc)}")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("%s: %s %s failed", name, action.op, action.path, exc_info=True)
        error = exc
        outcome.result = ActionResult.FAILED
        outcome.error = describe(exc)
        outcome.seconds = round(time.perf_counter() - started, 3)
        if guarded and guard is not None:
            try:
                await guard.failed(name, action, outcome)
            except Exception as hook_exc:
                report.warnings.append(f"{action.path}: failed hook failed: {describe(hook_exc)}")
    finally:
        run.listener.action_finished(name, action, outcome)
    return outcome, error


async def _perform(writer: _Writer, action: Action, outcome: ActionReport) -> ActionResult:
    """The back-end call for one action, and the manifest bookkeeping that goes with it."""
    run, name, backend = writer.run, writer.name, writer.backend
    if action.op in (Op.UPLOAD, Op.REPLACE):
        assert action.local is not None and action.sha256 is not None
        local = action.local
        result = await backend.upload(
            action.path,
            local.abspath,
            size=local.size,
            sha256=action.sha256,
            progress=lambda nbytes: run.listener.progress(name, action, nbytes),
        )
        outcome.notes.extend(result.notes)
        if result.size != local.size:
            raise UploadSizeMismatch(f"the printer holds {result.size} bytes, {local.size} were sent")
        record = ManifestRecord(sha256=action.sha256, size=result.size, mtime=result.mtime)
        await _manifest(run, outcome, run.manifest.save, name, action.path, record)
        return ActionResult.OK
    assert action.remote is not None
    if action.op is Op.DELETE:
        try:
            await backend.delete_file(action.remote)
        except UpstreamNotFound:
            outcome.reason = "already gone from the printer"
            await _manifest(run, outcome, run.manifest.forget, name, action.path)
            return ActionResult.SKIPPED
        await _manifest(run, outcome, run.manifest.forget, name, action.path)
        return ActionResult.OK
    try:
        await backend.delete_folder(action.remote)
    except (UpstreamNotFound, UpstreamConflict) as exc:
        # Buddy answers 404 for a folder that still holds files it does not list (.txt, .bbf): leave it.
        outcome.reason = f"the printer kept the folder ({describe(exc)})"
        return ActionResult.SKIPPED
    return ActionResult.OK


async def _manifest(run: _Run, outcome: ActionReport, call: Callable[..., None], *args: object) -> None:
    """Update the manifest; a failure is a note (the write itself succeeded), not a failed action."""
    try:
        await run.manifest_call(call, *args)
    except Exception as exc:
        outcome.notes.append(f"manifest not updated: {describe(exc)}")


class UploadSizeMismatch(FarmsyncError):
    """The printer's copy does not have the size we sent."""
