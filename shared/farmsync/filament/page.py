"""What the operator's page shows of filament, recorded after a run so that viewing the page reads nothing upstream.

The snapshot holds every spool farmsync knows (loaded and in storage, depleted, missing on one side), the
conflicts with their reasons, the grams the status filter leaves out, and the plan: the writes a run would make
now, in words, with a digest. Applying from the page posts that digest back; the plan is made again and applied
only when it is still the same, so the page never writes something other than what it showed.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from farmsync.errors import FarmsyncError, InputError
from farmsync.filament.context import FilamentSync
from farmsync.filament.report import FilamentReport, FilamentStatus, Outcome, SpoolView
from farmsync.filament.run import META_NS, PLAN_TRIGGER, enabled_steps, run_with_view
from farmsync.filament.status import filament_status, status_of
from farmsync.filament.writes import Write
from farmsync.logs import action, get_logger
from farmsync.services import Services

log = get_logger("filament")
SNAPSHOT_KEY = "page-filament"
MAX_LISTED = 200  # spools and plan lines kept in the snapshot: the store value stays small


class PlanChanged(InputError):
    """The plan the page showed is no longer what a run would do: nothing was written."""

    status_code = 409


def plan_digest(writes: list[Write]) -> str:
    """A short fingerprint of exactly these writes (system, method, path and body). Usage rows are planned in
    parallel, so the order is not part of it: the same set of writes is the same plan."""
    each = sorted(
        json.dumps(w.model_dump(mode="json"), sort_keys=True, separators=(",", ":")) for w in writes
    )
    return hashlib.sha256("\n".join(each).encode("utf-8")).hexdigest()[:32]


def spool_name(view: SpoolView | Any) -> str:
    """A spool as people know it: material and colour, with its tag to tell two alike apart."""
    words = " ".join(str(v) for v in (view.material, view.color_name) if v) or view.part_name or "spool"
    tag = view.tag_uid or view.tray_uuid or view.batch
    return f"{words} ({tag})" if tag else words


def _spool(view: SpoolView, state: str, where: str | None, reason: str | None = None) -> dict[str, Any]:
    grams = view.inventree_grams if view.inventree_grams is not None else view.bambuddy_remaining_grams
    return {
        "name": spool_name(view),
        "material": view.material,
        "colour": view.color_name,
        "rgba": view.rgba,
        "batch": view.batch,
        "grams": grams,
        "where": where or view.location_name,
        "state": state,
        "reason": reason,
    }


def spools_of(status: FilamentStatus) -> list[dict[str, Any]]:
    """Every spool once: matched (loaded or in storage), InvenTree-only, Bambuddy-only and depleted ones."""
    loaded = {slot.spool_id: slot for slot in status.loaded}
    out: list[dict[str, Any]] = []
    for view in status.matched:
        slot = loaded.get(view.spool_id) if view.spool_id is not None else None
        where = f"{slot.printer or 'a printer'}, slot {slot.slot}" if slot else None
        entry = _spool(view, "loaded" if slot else "in storage", where)
        if slot and slot.grams_left is not None:
            entry["grams"] = slot.grams_left
        out.append(entry)
    for view in status.missing_in_bambuddy:
        reason = f"InvenTree holds batch {view.batch} but Bambuddy has no spool with that tag"
        out.append(_spool(view, "missing in Bambuddy", None, reason))
    for view in status.missing_in_inventree:
        reason = "Bambuddy has this spool but InvenTree has no stock with its tag"
        out.append(_spool(view, "missing in InvenTree", None, reason))
    for view in status.depleted:
        out.append(_spool(view, "depleted", None, view.depleted))
    order = {"loaded": 0, "in storage": 1, "missing in InvenTree": 2, "missing in Bambuddy": 3, "depleted": 4}
    return sorted(out, key=lambda s: (order.get(s["state"], 9), str(s["where"] or ""), s["name"]))[
        :MAX_LISTED
    ]


def plan_of(report: FilamentReport) -> dict[str, Any]:
    return {
        "digest": plan_digest(report.writes),
        "steps": report.steps,
        "lines": [
            {"system": w.system, "words": w.purpose or f"{w.method} {w.path}"}
            for w in report.writes[:MAX_LISTED]
        ],
        "count": len(report.writes),
        "conflicts": len(report.conflicts),
        "errors": report.errors,
    }


async def make_plan(services: Services) -> tuple[FilamentReport, FilamentSync]:
    """What a run of the enabled steps would write now (a dry run: nothing is written, the store included),
    and the view it read."""
    return await run_with_view(services, dry_run=True, trigger=PLAN_TRIGGER)


def plan_left_by(services: Services, run: FilamentReport) -> FilamentReport | None:
    """The plan a finished run of the enabled steps already tells, without planning again: a dry run is that
    plan; a real run that finished every line has none left (what it wrote is done, what it left pending
    waits for something a run cannot do). None when the run cannot tell: other steps, a step that failed, or
    a line that failed and may be tried again at once."""
    if run.steps != enabled_steps(services.settings):
        return None
    if run.dry_run:
        return run
    steps = [step for step in (run.usage, run.locations, run.spools) if step is not None]
    if run.errors or any(line.outcome is Outcome.FAILED for step in steps for line in step.lines):
        return None
    return FilamentReport(dry_run=True, trigger=PLAN_TRIGGER, steps=run.steps, conflicts=run.conflicts)


async def record_snapshot(
    services: Services, run: FilamentReport | None = None, view: FilamentSync | None = None
) -> dict[str, Any]:
    """Keep the status and the plan for the page. After a run, pass its report and ``view``: the status is
    built from what the run read and did, and the plan from what it planned, so recording costs no second
    read; otherwise one dry run (:func:`make_plan`) gives both the plan and the view."""
    plan = plan_left_by(services, run) if run is not None else None
    if plan is None:  # one fresh dry run: the plan, and the view the status is built from
        plan, view = await make_plan(services)
        run = plan
    if view is None:
        status = await filament_status(services)
    else:
        status = await status_of(view, run.usage if run is not None else None)
    snapshot = {
        "at": time.time(),
        "spools": spools_of(status),
        "counts": status.counts,
        "conflicts": [{"key": c.key, "kind": c.kind, "reason": c.detail} for c in status.conflicts][
            :MAX_LISTED
        ],
        "left_out": [
            {"name": " ".join(v for v in (e.material, e.color_name) if v) or e.batch, "grams": e.grams}
            for e in status.usage_left_out
        ],
        "left_out_note": status.usage_left_out_note,
        "pending_usage": len(status.pending_usage),
        "parked_usage": [p.get("error") for p in status.parked_usage][:20],
        "problems": status.location_problems + status.warnings,
        "last_run": status.last_run,
        "plan": plan_of(plan),
    }
    await services.store.put_value(META_NS, SNAPSHOT_KEY, snapshot)
    return snapshot


async def apply_plan(services: Services, digest: str) -> FilamentReport:
    """Run the plan whose digest the page showed, or refuse (409) when a run would now do something else."""
    plan, planned = await make_plan(services)
    if plan_digest(plan.writes) != digest:
        await record_snapshot(services, plan, planned)
        raise PlanChanged(
            "the filament plan changed since the page showed it; nothing was written, look at the new plan",
            field="digest",
            expected="the digest of the plan as it is now",
        )
    report, view = await run_with_view(services, dry_run=False, trigger="page-apply")
    await record_snapshot(services, report, view)
    return report


async def refresh_snapshot(
    services: Services, report: FilamentReport | None = None, view: FilamentSync | None = None
) -> None:
    """After a run: record the page's snapshot from the run's ``view``; a failure here is logged, never the
    run's failure."""
    try:
        await record_snapshot(services, report, view)
    except (FarmsyncError, OSError) as exc:
        action(log, "filament page snapshot not recorded", 30, error=str(exc)[:300])
