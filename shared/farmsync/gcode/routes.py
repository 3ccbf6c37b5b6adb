"""The G-code mirror as a service: the scheduled tick, ``POST /sync/gcode`` and ``GET /gcode/status``.

Everything comes from settings (GCODE_*): the printers file, the master folder, destination, relative-to,
suffixes, concurrency, ignore-state, dry run (default on, GCODE_DRY_RUN) and pull mode (GCODE_PULL, default off).
The service keeps its state in the project's store, so several instances (or a CLI run beside ``farmsync serve``)
share it: the upload manifest (:mod:`farmsync.gcode.store_manifest`), write locks (:mod:`farmsync.gcode.guard`),
and each printer's last result in values namespace ``gcode-status``.

Busy printers are *deferred*: the next tick simply plans them again. Their status entry stays "deferred" (with
the time it first was) through later deferrals and dry runs, until a real run reaches the printer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

from farmsync import metrics, notify
from farmsync.errors import InputError, StoreError
from farmsync.gcode.backends.base import PrinterBackend
from farmsync.gcode.config import PrinterConfig, load_printers
from farmsync.gcode.engine import BackendFactory, MirrorOptions, run_mirror
from farmsync.gcode.guard import WriteGuard, store_lock
from farmsync.gcode.local import DIGEST_CACHE_FILE, DigestCache
from farmsync.gcode.pull import run_pull
from farmsync.gcode.pull_report import PullPrinterReport, PullReport, PullResult
from farmsync.gcode.report import ActionResult, MirrorReport, PrinterOutcome, PrinterReport
from farmsync.gcode.store_manifest import StoreManifestStore
from farmsync.human import with_iso_times
from farmsync.logs import action, get_logger, register_secrets
from farmsync.services import Services, get_services
from farmsync.settings import Settings
from farmsync.web.call import Call

log = get_logger("gcode")

STATUS_NAMESPACE = "gcode-status"
PRINTERS_KEY = "printers"
LAST_RUN_KEY = "last-run"
STATUS_LOCK_NAMESPACE = "gcode-status-lock"
LISTING_CACHE = "gcode-listing-cache"

GcodeReport = MirrorReport | PullReport


def mirror_options(settings: Settings, *, dry_run: bool | None = None) -> MirrorOptions:
    """The engine's options from GCODE_* settings. An empty GCODE_DESTINATION means each printer's own
    ``destination`` key, else the storage root (as the CLI does without ``-d``)."""
    return MirrorOptions(
        destination=settings.gcode_destination or None,
        relative_to=settings.gcode_relative_to,
        suffixes=tuple(settings.gcode_suffixes),
        dry_run=settings.gcode_dry_run if dry_run is None else dry_run,
        ignore_state=settings.gcode_ignore_state,
        concurrency=settings.gcode_concurrency,
    )


def load_farm(settings: Settings) -> list[PrinterConfig]:
    """printers.yml of GCODE_PRINTERS_FILE; its secrets are registered so no log line can carry them."""
    settings.require("gcode")
    printers = load_printers(settings.gcode_printers_file)
    register_secrets(
        secret.get_secret_value()
        for p in printers
        for secret in (p.password, p.api_key, p.access_code)
        if secret is not None
    )
    return printers


def backend_factory(services: Services) -> BackendFactory:
    """The real back ends, each printer keeping its folder listings (with ETags) for the life of the process,
    so a tick re-lists an unchanged Buddy folder with a 304."""
    caches: MutableMapping[str, Any] = services.state.setdefault(LISTING_CACHE, {})
    timeout = services.settings.http_timeout_seconds

    def build(printer: PrinterConfig) -> PrinterBackend:
        from farmsync.gcode.backends import backend_for

        return backend_for(printer, timeout=timeout, listing_cache=caches.setdefault(printer.name, {}))

    return build


async def run_gcode(
    services: Services,
    *,
    dry_run: bool | None = None,
    pull: bool | None = None,
    trigger: str = "tick",
    only: str | None = None,
) -> GcodeReport:
    """One mirror (or pull) run over every printer of the printers file, recorded for the status page.

    ConfigError when GCODE_SOURCE_DIR is unset or printers.yml is invalid (the router answers 503). ``only``
    names one printer of the file (the operator page's per-printer button); another name is a 422.
    """
    settings = services.settings
    started = time.monotonic()
    printers = await asyncio.to_thread(load_farm, settings)
    if only is not None:
        printers = [p for p in printers if p.name == only]
        if not printers:
            raise InputError(
                f"no printer named {only[:60]!r} in the printers file",
                field="printer",
                expected="the name of a printer in GCODE_PRINTERS_FILE",
                status_code=422,
            )
    assert settings.gcode_source_dir is not None  # load_farm required it
    options = mirror_options(settings, dry_run=dry_run)
    store = services.sync_store
    manifest = StoreManifestStore(store)
    factory = backend_factory(services)
    report: GcodeReport
    if settings.gcode_pull if pull is None else pull:
        report = await run_pull(printers, settings.gcode_source_dir, options, factory, manifest)
    else:
        guard = WriteGuard(store)
        try:
            report = await run_mirror(
                printers,
                settings.gcode_source_dir,
                options,
                factory,
                manifest,
                guard=guard.guard,
                done=guard.done,
                failed=guard.failed,
                digests=DigestCache(settings.data_dir / DIGEST_CACHE_FILE),
            )
        finally:
            await guard.aclose()
    metrics.run_duration("gcode", time.monotonic() - started)
    count_files(report)
    try:
        await record_status(services, report, trigger=trigger)
    except StoreError as exc:  # the run itself happened: report it, say the status page missed it
        log.error("gcode status not recorded: %s", exc)
        report.notes.append(f"status not recorded in the store: {exc}")
    await notify.gcode_failures(settings, services.store, report.printers)
    action(
        log,
        "gcode run finished",
        mode=report.mode if isinstance(report, PullReport) else "mirror",
        dry_run=report.dry_run,
        trigger=trigger,
        exit_code=report.exit_code,
    )
    return report


def count_files(report: GcodeReport) -> None:
    """Files and bytes per printer for /metrics: uploaded (new or replaced), deleted, failed writes."""
    if report.dry_run:
        return
    for printer in report.printers:
        if isinstance(printer, PullPrinterReport):
            metrics.gcode_files(printer.name, "failed", len(printer.failures))
            continue
        uploaded = printer.count(op="upload", result=ActionResult.OK) + printer.count(
            op="replace", result=ActionResult.OK
        )
        metrics.gcode_files(printer.name, "uploaded", uploaded, printer.bytes_uploaded)
        metrics.gcode_files(printer.name, "deleted", printer.count(op="delete", result=ActionResult.OK))
        metrics.gcode_files(printer.name, "failed", len(printer.failures))


async def run_scheduled(services: Services) -> GcodeReport:
    """The scheduled tick (``farmsync serve``'s scheduler, ``farmsync tick gcode``, the function target)."""
    return await run_gcode(services, trigger="tick")


# --- status ----------------------------------------------------------------------------------------------


def summary(printer: PrinterReport | PullPrinterReport, *, dry_run: bool) -> tuple[str, dict[str, int]]:
    """One line for the dashboard and its counts, e.g. "2 uploaded, 1 deleted" or "dry run: 3 to upload"."""
    if printer.status is PrinterOutcome.DEFERRED:
        return f"deferred: printer is {printer.state or 'busy'}", {}
    if isinstance(printer, PullPrinterReport):
        counts = {r.value: printer.count(r) for r in PullResult if printer.count(r)}
        done = "planned" if dry_run else "pulled"
        parts = [f"{counts.get(done, 0)} {'to pull' if dry_run else 'pulled'}"]
        parts += [f"{counts[k]} {k}" for k in ("conflict", "rejected", "failed") if counts.get(k)]
        return ("dry run: " if dry_run else "") + ", ".join(parts), counts
    wanted = ActionResult.PLANNED if dry_run else ActionResult.OK
    counts = {
        op: printer.count(op=op, result=wanted) for op in ("upload", "replace", "delete", "delete_folder")
    }
    counts = {k: v for k, v in counts.items() if v}
    failed = len(printer.failures)
    if failed:
        counts["failed"] = failed
    words = {"upload": "upload", "replace": "replace", "delete": "delete", "delete_folder": "folder delete"}
    if dry_run:
        parts = [f"{n} to {words[op]}" for op, n in counts.items() if op in words]
        return "dry run: " + (", ".join(parts) or "nothing to do"), counts
    past = {
        "upload": "uploaded",
        "replace": "replaced",
        "delete": "deleted",
        "delete_folder": "folders deleted",
    }
    parts = [f"{n} {past[op]}" for op, n in counts.items() if op in past]
    if failed:
        parts.append(f"{failed} failed")
    return ", ".join(parts) or "in sync, nothing to do", counts


def merge_entry(
    previous: dict[str, Any] | None,
    printer: PrinterReport | PullPrinterReport,
    *,
    mode: str,
    dry_run: bool,
    at: float,
) -> dict[str, Any]:
    """A printer's new status entry. "deferred" sticks through deferrals and dry runs until a real run."""
    previous = previous or {}
    line, counts = summary(printer, dry_run=dry_run)
    was_deferred = previous.get("status") == PrinterOutcome.DEFERRED.value
    status = printer.status.value
    deferred_since = None
    if printer.status is PrinterOutcome.DEFERRED:
        deferred_since = previous.get("deferred_since") if was_deferred else at
    elif dry_run and was_deferred:
        status = PrinterOutcome.DEFERRED.value
        deferred_since = previous.get("deferred_since")
        line = f"deferred, not synced yet (last {line})"
    return {
        "name": printer.name,
        "kind": printer.kind,
        "state": printer.state,
        "status": status,
        "summary": line,
        "counts": counts,
        "mode": mode,
        "dry_run": dry_run,
        "at": at,
        "error": printer.error,
        "deferred_since": deferred_since,
        "last_synced_at": at
        if printer.status is PrinterOutcome.SYNCED and not dry_run
        else previous.get("last_synced_at"),
        **file_counts(previous, printer, dry_run=dry_run),
    }


def file_counts(
    previous: dict[str, Any], printer: PrinterReport | PullPrinterReport, *, dry_run: bool
) -> dict[str, Any]:
    """For the page: files in step, to upload and to delete (with a few names), and the running transfer totals.

    A dry run's planned actions are what is still to do; after a real run, what failed still is."""
    if isinstance(printer, PullPrinterReport) or printer.status is PrinterOutcome.DEFERRED:
        keep = ("in_step", "to_upload", "to_delete", "pending_files", "bytes_total", "files_total")
        return {k: previous[k] for k in keep if k in previous}
    open_result = ActionResult.PLANNED if dry_run else ActionResult.FAILED
    uploads = [a for a in printer.actions if a.op in ("upload", "replace") and a.result is open_result]
    deletes = [a for a in printer.actions if a.op in ("delete", "delete_folder") and a.result is open_result]
    done = (
        []
        if dry_run
        else [a for a in printer.actions if a.op in ("upload", "replace") and a.result is ActionResult.OK]
    )
    return {
        "in_step": printer.count(op="skip") + len(done),
        "to_upload": len(uploads),
        "to_delete": len(deletes),
        "pending_files": [a.path for a in (uploads + deletes)[:10]],
        "bytes_total": int(previous.get("bytes_total") or 0) + (0 if dry_run else printer.bytes_uploaded),
        "files_total": int(previous.get("files_total") or 0) + len(done),
    }


async def record_status(services: Services, report: GcodeReport, *, trigger: str) -> None:
    """Merge this run's per-printer results into ``gcode-status`` (under a short lock: runs may overlap)."""
    store = services.sync_store
    mode = "pull" if isinstance(report, PullReport) else "mirror"
    at = (report.finished_at or report.started_at).timestamp()

    def write() -> None:
        with store_lock(store, STATUS_LOCK_NAMESPACE, PRINTERS_KEY):
            entries = store.get_value(STATUS_NAMESPACE, PRINTERS_KEY)
            entries = entries if isinstance(entries, dict) else {}
            for printer in report.printers:
                entries[printer.name] = merge_entry(
                    entries.get(printer.name), printer, mode=mode, dry_run=report.dry_run, at=at
                )
            store.put_value(STATUS_NAMESPACE, PRINTERS_KEY, entries)
        store.put_value(
            STATUS_NAMESPACE,
            LAST_RUN_KEY,
            {
                "at": at,
                "mode": mode,
                "dry_run": report.dry_run,
                "trigger": trigger,
                "exit_code": report.exit_code,
                "printers": len(report.printers),
                "conflicts": len(report.conflicts) if isinstance(report, PullReport) else 0,
                "problems": report.problems,
            },
        )

    await asyncio.to_thread(write)


async def gcode_status(services: Services) -> dict[str, Any]:
    """Each printer's last result (``deferred`` ones also listed apart) and the last run, from the store."""
    store = services.store
    entries = await store.get_value(STATUS_NAMESPACE, PRINTERS_KEY)
    printers = sorted((entries or {}).values(), key=lambda e: str(e.get("name", "")).casefold())
    printers = [with_iso_times(e, "at", "deferred_since", "last_synced_at") for e in printers]
    return {
        "printers": printers,
        "deferred": [e["name"] for e in printers if e.get("status") == PrinterOutcome.DEFERRED.value],
        "last_run": with_iso_times(await store.get_value(STATUS_NAMESPACE, LAST_RUN_KEY)),
    }


# --- handlers --------------------------------------------------------------------------------------------


async def tick(call: Call) -> Any:
    """Scheduled run (Cloud Scheduler HTTP or a Pub/Sub CloudEvent): the body carries nothing we use."""
    await call.body()
    return await run_scheduled(get_services())


async def status(call: Call) -> Any:
    """GET /gcode/status."""
    return await gcode_status(get_services())


async def sync(call: Call) -> Any:
    """POST /sync/gcode?dry_run=true|false&pull=true|false; defaults from GCODE_DRY_RUN and GCODE_PULL."""
    services = get_services()
    settings = services.settings
    dry_run = call.flag("dry_run", settings.gcode_dry_run)
    pull = call.flag("pull", settings.gcode_pull)
    return await run_gcode(services, dry_run=dry_run, pull=pull, trigger="api")
