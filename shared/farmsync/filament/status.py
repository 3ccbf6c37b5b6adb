"""``GET /filament/status``: how the two systems match, what is waiting, and what each printer has loaded.

Read-only: it runs the usage step as a dry run to list pending rows with their reasons, so the page says
exactly what the next real run would do with them. A Bambuddy spool whose InvenTree item ran out is listed as
depleted, not as missing: the store remembers it, the usage run's look at InvenTree's history shows it (so this
holds after the store is lost, on API ≥ 450), or an emptied item that InvenTree kept carries its batch.
"""

from __future__ import annotations

from farmsync.clients.bambuddy_models import Spool
from farmsync.clients.inventree_models import StockItem
from farmsync.filament.context import FilamentSync
from farmsync.filament.locations import location_for, slot_label
from farmsync.filament.match import batch_keys, spool_keys
from farmsync.filament.parts import grams_per_unit
from farmsync.filament.report import FilamentStatus, LoadedSlot, Outcome, SpoolView, UsageReport
from farmsync.filament.run import LAST_RUN_KEY, META_NS, filament_sync
from farmsync.filament.usage import DEPLETED_NS, USAGE_NS, left_out, sync_usage
from farmsync.human import iso_time, with_iso_times
from farmsync.services import Services
from farmsync.store import State


def grams_of(item: StockItem) -> float | None:
    per = grams_per_unit(item.part_detail.units if item.part_detail else None)
    return None if per is None else round(item.quantity * per, 3)


def view(item: StockItem | None, spool: Spool | None) -> SpoolView:
    out = SpoolView()
    if item is not None:
        out.batch, out.stock_item, out.part = item.batch, item.pk, item.part
        out.part_name = (item.part_detail.full_name or item.part_detail.name) if item.part_detail else None
        out.location = item.location
        out.location_name = item.location_detail.pathstring if item.location_detail else None
        out.inventree_grams = grams_of(item)
    if spool is not None:
        out.spool_id, out.material, out.color_name = spool.id, spool.material, spool.color_name
        out.rgba = spool.rgba
        out.tag_uid, out.tray_uuid, out.archived = spool.tag_uid, spool.tray_uuid, spool.is_archived
        out.bambuddy_remaining_grams = round(spool.remaining_grams, 3)
    if out.inventree_grams is not None and out.bambuddy_remaining_grams is not None:
        out.drift_grams = round(out.inventree_grams - out.bambuddy_remaining_grams, 3)
    return out


async def filament_status(services: Services) -> FilamentStatus:
    """Everything ``/filament/status`` shows; writes nothing."""
    return await status_of(filament_sync(services, dry_run=True))


async def status_of(run: FilamentSync, usage: UsageReport | None = None) -> FilamentStatus:
    """The status as ``run`` sees both systems: a fresh read, or a finished run's view (its reads and writes),
    so the page's snapshot after a run costs no second read. ``usage`` is that run's usage step; without it the
    usage step runs dry here. Writes nothing, whatever ``run`` is."""
    ctx = run.dry_view()
    settings = ctx.settings
    await ctx.load()
    index = ctx.index
    status = FilamentStatus(
        tracking_enabled=settings.filament_tracking_enabled,
        dry_run_default=settings.filament_dry_run,
        batch_source=ctx.source,
        conflicts=list(index.conflicts),
        untagged_spools=list(index.untagged_spools),
        unidentified_items=list(index.unidentified_items),
    )
    status.matched = [view(ctx.items.get(m.item), ctx.spools.get(m.spool)) for m in index.matches]
    status.missing_in_bambuddy = [view(ctx.items.get(pk), None) for _, pk in index.missing_in_bambuddy]
    status.loaded = await _loaded(ctx)
    mapping = settings.filament_printer_location_map
    await ctx.prefetch_locations(
        (location, f"FILAMENT_PRINTER_LOCATION_MAP entry {prefix}:{location}")
        for prefix, location in mapping.items()
    )
    for prefix, location in sorted(mapping.items()):
        check = await ctx.location(location, f"FILAMENT_PRINTER_LOCATION_MAP entry {prefix}:{location}")
        if check.problem:
            status.location_problems.append(check.problem)
    if usage is None:
        usage = await sync_usage(ctx)
    status.warnings.extend(usage.warnings)
    status.usage_cursor = usage.cursor_after  # as stored now: a dry pass leaves it where it was
    await _split_depleted(ctx, status)
    status.usage_left_out = left_out(ctx, ctx.usage_rows)
    if status.usage_left_out:
        grams = sum(entry.grams for entry in status.usage_left_out)
        status.usage_left_out_note = (
            f"{grams:g} g of failed, aborted or cancelled runs in the newest {len(ctx.usage_rows)} usage rows "
            "are not subtracted in InvenTree (Bambuddy counts them as used). Add their statuses to "
            "FILAMENT_USAGE_SUCCESS_STATUSES to subtract them."
        )
    parked = await ctx.store.list(USAGE_NS, State.PARKED, 50)
    status.parked_usage = [
        {
            "usage_id": int(r.key),
            "error": r.last_error,
            "attempts": r.attempts,
            "updated_at": iso_time(r.updated_at),
        }
        for r in parked
    ]
    already_parked = {p["usage_id"] for p in status.parked_usage}
    # Not finished yet: planned (the next run subtracts it), pending, failed, or refused but not parked yet.
    status.pending_usage = [
        line
        for line in usage.lines
        if not line.finished or (line.outcome is Outcome.PARKED and line.usage_id not in already_parked)
    ]
    status.last_run = with_iso_times(await ctx.store.get_value(META_NS, LAST_RUN_KEY))
    status.counts = {
        "matched": len(status.matched),
        "missing_in_bambuddy": len(status.missing_in_bambuddy),
        "missing_in_inventree": len(status.missing_in_inventree),
        "depleted": len(status.depleted),
        "conflicts": len(status.conflicts),
        "pending_usage": len(status.pending_usage),
        "parked_usage": len(status.parked_usage),
        "loaded": len(status.loaded),
    }
    return status


async def _split_depleted(ctx: FilamentSync, status: FilamentStatus) -> None:
    """Spools without stock in InvenTree: depleted when the store, this run's history reads or an emptied
    item that InvenTree kept says their item ran out; missing otherwise."""
    spools = [ctx.spools[sid] for sid in ctx.index.missing_in_inventree]
    if not spools:
        return
    empty = await ctx.inventree.list_stock(
        category=ctx.settings.filament_part_category_id, in_stock=False, part_detail=True
    )
    emptied = {
        key: item for item in empty if item.quantity <= 0 for key in batch_keys(item.batch, ctx.source)
    }
    ran_out = ctx.ledger.ran_out if ctx.ledger else {}
    for spool in spools:
        keys = sorted(spool_keys(spool))
        note: str | None = None
        for key in keys:
            remembered = await ctx.store.get_value(DEPLETED_NS, f"{key[0]}:{key[1]}")
            if remembered:
                note = (
                    f"ran out: batch {remembered.get('batch')} used up (usage {remembered.get('usage_id')})"
                )
                break
        if note is None and spool.id in ran_out:
            note = f"ran out: {ran_out[spool.id].ran_out_text()} (InvenTree's stock history)"
        if note is None:
            item = next((emptied[key] for key in keys if key in emptied), None)
            if item is not None:
                note = f"ran out: InvenTree item {item.pk} (batch {item.batch}) has nothing left"
        spool_view = view(None, spool)
        if note is None:
            status.missing_in_inventree.append(spool_view)
        else:
            spool_view.depleted = note
            status.depleted.append(spool_view)


async def _loaded(ctx: FilamentSync) -> list[LoadedSlot]:
    slots: list[LoadedSlot] = []
    mapping = ctx.settings.filament_printer_location_map
    for a in sorted(await ctx.assignments(), key=lambda a: (a.printer_name or "", a.ams_id, a.tray_id)):
        spool = ctx.spools.get(a.spool_id) or a.spool
        match = ctx.index.by_spool.get(a.spool_id)
        item = ctx.items.get(match.item) if match else None
        target = location_for(a.printer_name, mapping)
        slot = LoadedSlot(
            printer=a.printer_name,
            printer_id=a.printer_id,
            slot=slot_label(a),
            spool_id=a.spool_id,
            batch=match.batch if match else None,
            stock_item=item.pk if item else None,
            material=spool.material if spool else None,
            color_name=spool.color_name if spool else None,
            rgba=spool.rgba if spool else None,
            label_weight=spool.label_weight if spool else None,
            grams_source="inventree" if item is not None else "bambuddy",
            location=item.location if item else None,
            target_location=target[1] if target else None,
        )
        if item is not None:
            slot.grams_left = grams_of(item)
        elif spool is not None:
            slot.grams_left = round(spool.remaining_grams, 3)
        slots.append(slot)
    return slots
