"""Each printer's last G-code result, for the status page and the operator page: the entries in values namespace
``gcode-status`` of the store, merged from every run (command line, tick or route).

Busy printers are *deferred*: the next tick simply plans them again. Their status entry stays "deferred" (with
the time it first was) through later deferrals and dry runs, until a real run reaches the printer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeAlias

from farmsync.gcode.guard import store_lock
from farmsync.gcode.report import ActionResult, MirrorReport, PrinterOutcome, PrinterReport
from farmsync.human import with_iso_times
from farmsync.store.base import AsyncStore, Store

if TYPE_CHECKING:  # a pull's report is loaded by pulls only; a mirror run (or a tick) never needs it
    from farmsync.gcode.pull_report import PullPrinterReport, PullReport

STATUS_NAMESPACE = "gcode-status"
PRINTERS_KEY = "printers"
LAST_RUN_KEY = "last-run"
STATUS_LOCK_NAMESPACE = "gcode-status-lock"

GcodeReport: TypeAlias = "MirrorReport | PullReport"


def summary(printer: PrinterReport | PullPrinterReport, *, dry_run: bool) -> tuple[str, dict[str, int]]:
    """One line for the dashboard and its counts, e.g. "2 uploaded, 1 deleted" or "dry run: 3 to upload"."""
    if printer.status is PrinterOutcome.DEFERRED:
        return f"deferred: printer is {printer.state or 'busy'}", {}
    if not isinstance(printer, PrinterReport):  # a pull's printer
        from farmsync.gcode.pull_report import PullResult

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
    if not isinstance(printer, PrinterReport) or printer.status is PrinterOutcome.DEFERRED:
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


async def record_status(store: Store, report: GcodeReport, *, trigger: str) -> None:
    """Merge this run's per-printer results into ``gcode-status`` (under a short lock: runs may overlap)."""
    mode = "mirror" if isinstance(report, MirrorReport) else "pull"
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
                "conflicts": 0 if isinstance(report, MirrorReport) else len(report.conflicts),
                "problems": report.problems,
            },
        )

    await asyncio.to_thread(write)


async def read_status(store: AsyncStore) -> dict[str, Any]:
    """Each printer's last result (``deferred`` ones also listed apart) and the last run, from the store."""
    entries = await store.get_value(STATUS_NAMESPACE, PRINTERS_KEY)
    printers = sorted((entries or {}).values(), key=lambda e: str(e.get("name", "")).casefold())
    printers = [with_iso_times(e, "at", "deferred_since", "last_synced_at") for e in printers]
    return {
        "printers": printers,
        "deferred": [e["name"] for e in printers if e.get("status") == PrinterOutcome.DEFERRED.value],
        "last_run": with_iso_times(await store.get_value(STATUS_NAMESPACE, LAST_RUN_KEY)),
    }
