"""Bambuddy assignments → InvenTree locations: a loaded spool sits at its printer's location.

Each assignment's printer name maps to a location through FILAMENT_PRINTER_LOCATION_MAP: the key is a prefix of
the printer name, compared without case, and the longest matching prefix wins (``B1`` and ``B10`` can both be
mapped; with only ``B1`` mapped, ``B10-P1S`` would match it too). Every target is checked first (it must exist and
must not be structural); a bad map entry is reported by name and nothing is moved there.

Moves are whole-quantity transfers (a partial transfer splits the item into a new pk); a real run re-reads the
item just before moving, so the quantity sent is the current one. With FILAMENT_RETURN_UNASSIGNED_TO_STORAGE,
matched spools that sit in a printer location (a mapped one, or under FILAMENT_LOADED_LOCATION_ID) and are no
longer assigned go back to FILAMENT_STORAGE_LOCATION_ID. Unmatched items are never moved: farmsync does not
know where they belong.
"""

from __future__ import annotations

from dataclasses import dataclass

from farmsync.clients.bambuddy_models import SpoolAssignment
from farmsync.errors import FarmsyncError, UpstreamNotFound
from farmsync.filament.context import FilamentSync
from farmsync.filament.report import LocationsReport, MoveLine, Outcome
from farmsync.filament.writes import transfer_body
from farmsync.logs import action, get_logger

log = get_logger("filament")


def location_for(printer: str | None, mapping: dict[str, int]) -> tuple[str, int] | None:
    """(prefix, location) of the longest map prefix of ``printer`` (case-insensitive), or None."""
    name = (printer or "").strip().casefold()
    if not name:
        return None
    best: tuple[str, int] | None = None
    for prefix, location in mapping.items():
        if name.startswith(prefix.strip().casefold()) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, location)
    return best


def slot_label(assignment: SpoolAssignment) -> str:
    if assignment.ams_id in (254, 255):
        return f"external spool {assignment.tray_id}"
    name = assignment.ams_label or f"AMS {assignment.ams_id}"
    return f"{name} tray {assignment.tray_id}"


@dataclass
class Want:
    """Where one InvenTree item should be and why."""

    location: int
    printer: str | None
    slot: str
    spool_id: int


async def sync_locations(ctx: FilamentSync) -> LocationsReport:
    """Move assigned spools to their printer's location and, optionally, unassigned ones back to storage."""
    await ctx.load()
    s = ctx.settings
    report = LocationsReport()
    mapping = s.filament_printer_location_map
    if not mapping:
        report.warnings.append("FILAMENT_PRINTER_LOCATION_MAP is empty: no spool is moved to a printer")
    bad: dict[int, str] = {}
    await ctx.prefetch_locations(
        (location, f"FILAMENT_PRINTER_LOCATION_MAP entry {prefix}:{location}")
        for prefix, location in mapping.items()
    )
    for prefix, location in sorted(mapping.items()):
        check = await ctx.location(location, f"FILAMENT_PRINTER_LOCATION_MAP entry {prefix}:{location}")
        if not check.ok and check.problem:
            bad[location] = check.problem
            report.problems.append(check.problem)
    assignments = await ctx.assignments()
    wants: dict[int, list[Want]] = {}
    for assignment in sorted(assignments, key=lambda a: (a.printer_id, a.ams_id, a.tray_id)):
        line = await _assigned(ctx, assignment, mapping, bad, wants)
        if line is not None:
            report.lines.append(line)
    for pk, options in sorted(wants.items()):
        report.lines.append(await _place(ctx, pk, options))
    if s.filament_return_unassigned_to_storage:
        report.lines.extend(await _return_unassigned(ctx, set(wants), report))
    return report


async def _assigned(
    ctx: FilamentSync,
    assignment: SpoolAssignment,
    mapping: dict[str, int],
    bad: dict[int, str],
    wants: dict[int, list[Want]],
) -> MoveLine | None:
    """Record where an assigned spool's item should go; a line only when it cannot be placed."""
    slot = slot_label(assignment)
    line = MoveLine(
        spool_id=assignment.spool_id, printer=assignment.printer_name, slot=slot, outcome=Outcome.SKIPPED
    )
    conflict = ctx.index.conflicted_spools.get(assignment.spool_id)
    if conflict is not None:
        line.outcome, line.reason = Outcome.PENDING, f"conflict: {conflict.detail}"
        return line
    match = ctx.index.by_spool.get(assignment.spool_id)
    if match is None:
        line.reason = "this Bambuddy spool has no InvenTree stock item"
        return line
    line.stock_item, line.batch = match.item, match.batch
    item = ctx.items.get(match.item)
    if item is None:
        line.reason = "the InvenTree stock item was depleted"
        return line
    line.from_location = item.location
    target = location_for(assignment.printer_name, mapping)
    if target is None:
        line.reason = f"no FILAMENT_PRINTER_LOCATION_MAP prefix matches printer {assignment.printer_name!r}"
        return line
    _prefix, location = target
    line.to_location = location
    if location in bad:
        line.outcome, line.error = Outcome.FAILED, bad[location]
        return line
    wants.setdefault(match.item, []).append(
        Want(location, assignment.printer_name, slot, assignment.spool_id)
    )
    return None


async def _place(ctx: FilamentSync, pk: int, options: list[Want]) -> MoveLine:
    want = options[0]
    match = ctx.index.by_item[pk]
    line = MoveLine(
        stock_item=pk,
        batch=match.batch,
        spool_id=want.spool_id,
        printer=want.printer,
        slot=want.slot,
        to_location=want.location,
        outcome=Outcome.UNCHANGED,
    )
    if len({o.location for o in options}) > 1:
        places = ", ".join(f"{o.printer} {o.slot}" for o in options)
        line.outcome, line.reason = Outcome.PENDING, f"assigned to several printers at once ({places})"
        line.to_location = None
        return line
    notes = f"farmsync: loaded in {want.printer} {want.slot} (Bambuddy spool {want.spool_id})"
    return await move(ctx, line, pk, want.location, notes)


async def move(ctx: FilamentSync, line: MoveLine, pk: int, location: int, notes: str) -> MoveLine:
    """Transfer the whole item to ``location`` unless it is already there."""
    item = ctx.items.get(pk)
    if item is None:
        line.outcome, line.reason = Outcome.SKIPPED, "the InvenTree stock item was depleted"
        return line
    line.from_location = item.location
    try:
        if not ctx.dry_run and item.location != location:
            try:
                item = await ctx.inventree.get_stock(pk)
            except UpstreamNotFound:
                ctx.items.pop(pk, None)
                line.outcome, line.reason = Outcome.SKIPPED, "the InvenTree stock item is gone"
                return line
            line.from_location = item.location
        if item.location == location:
            line.outcome, line.reason = Outcome.UNCHANGED, "already there"
            return line
        if item.quantity <= 0:
            line.outcome, line.reason = Outcome.SKIPPED, "nothing left to move"
            return line
        write = ctx.executor.write(
            "inventree",
            "POST",
            "/api/stock/transfer/",
            transfer_body(pk, item.quantity, location, notes),
            f"move batch {line.batch} to {ctx.location_name(location) or f'location {location}'}",
        )
        await ctx.executor.run(write)
    except FarmsyncError as exc:
        line.outcome, line.error = Outcome.FAILED, str(exc)
        return line
    ctx.moved(pk, location)
    line.outcome = Outcome.PLANNED if ctx.dry_run else Outcome.APPLIED
    if not ctx.dry_run:
        action(log, "filament spool moved", stock_item=pk, batch=line.batch, location=location)
    return line


async def _return_unassigned(
    ctx: FilamentSync, assigned: set[int], report: LocationsReport
) -> list[MoveLine]:
    s = ctx.settings
    storage = s.filament_storage_location_id
    if storage is None:
        report.warnings.append(
            "FILAMENT_RETURN_UNASSIGNED_TO_STORAGE is on but FILAMENT_STORAGE_LOCATION_ID is not set"
        )
        return []
    check = await ctx.location(storage, f"FILAMENT_STORAGE_LOCATION_ID={storage}")
    if not check.ok and check.problem:
        report.problems.append(check.problem)
    printer_locations = set(s.filament_printer_location_map.values())
    under_loaded: set[int] = set()
    if s.filament_loaded_location_id is not None:
        loaded = await ctx.location(s.filament_loaded_location_id, "FILAMENT_LOADED_LOCATION_ID")
        if loaded.problem and "does not exist" in loaded.problem:
            report.problems.append(loaded.problem)
        else:
            found = await ctx.inventree.list_stock(
                category=s.filament_part_category_id,
                location=s.filament_loaded_location_id,
                cascade=True,
                in_stock=True,
                part_detail=False,
            )
            under_loaded = {i.pk for i in found}
    lines: list[MoveLine] = []
    for match in sorted(ctx.index.matches, key=lambda m: m.item):
        item = ctx.items.get(match.item)
        if match.item in assigned or item is None:
            continue
        if item.location not in printer_locations and match.item not in under_loaded:
            continue
        line = MoveLine(
            stock_item=match.item,
            batch=match.batch,
            spool_id=match.spool,
            to_location=storage,
            outcome=Outcome.UNCHANGED,
            reason="no longer assigned in Bambuddy",
        )
        if not check.ok:
            line.from_location, line.outcome, line.error = item.location, Outcome.FAILED, check.problem
            lines.append(line)
            continue
        notes = f"farmsync: Bambuddy spool {match.spool} is no longer loaded; back to storage"
        lines.append(await move(ctx, line, match.item, storage, notes))
    return lines
