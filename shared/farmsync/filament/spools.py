"""InvenTree spools → Bambuddy spools: create the missing ones, keep material, colour and weights current.

``weight_used`` belongs to Bambuddy once a spool exists: its usage tracker adds the grams of every print
(failed ones too, which InvenTree is not charged for) and the AMS may raise it. farmsync sets it only when it
creates a spool (label weight minus the InvenTree quantity), sending ``weight_locked: false`` so the AMS keeps
updating it; it is never PATCHed later (a PATCH of ``weight_used`` would also lock the weight), so an InvenTree
quantity that usage sync has not caught up with can never overwrite Bambuddy's figure. The difference is shown
as ``drift_grams`` on the status page.

Bambuddy accepts duplicate tags, so each create runs under a store claim on the batch key: two concurrent runs
never create two spools for one batch, and a takeover (an earlier attempt may have created it) looks before it
creates. When the spool farmsync created is later deleted in Bambuddy, it is created again once, under a claim
keyed on the deleted spool's id. Updates only write what InvenTree knows (a parameter), never a default, and
leave archived spools alone.
"""

from __future__ import annotations

from typing import Any

from farmsync.clients.bambuddy_models import Spool
from farmsync.clients.inventree import truncate
from farmsync.clients.inventree_models import StockItem
from farmsync.errors import FarmsyncError, LeaseLost, UpstreamNotFound
from farmsync.filament.context import FilamentSync
from farmsync.filament.match import Match, TagKey, batch_keys, spool_keys, tag_value
from farmsync.filament.parts import PartInfo
from farmsync.filament.report import Outcome, SpoolLine, SpoolsReport
from farmsync.filament.writes import Write
from farmsync.logs import action, get_logger
from farmsync.store import Claim, Record, State
from farmsync.store import Outcome as ClaimOutcome

log = get_logger("filament")

SPOOL_NS = "filament-spool-create"
NOTE_MAX = 500
MATERIAL_MAX = 50
MAX_GENERATIONS = 10


async def sync_spools(ctx: FilamentSync) -> SpoolsReport:
    """Create a Bambuddy spool for every unmatched InvenTree spool and update the matched ones."""
    await ctx.load()
    report = SpoolsReport()
    wanted = [pk for _, pk in ctx.index.missing_in_bambuddy] + [m.item for m in ctx.index.matches]
    await ctx.prefetch_parts(ctx.items[pk] for pk in wanted if pk in ctx.items)
    for key, pk in list(ctx.index.missing_in_bambuddy):
        report.lines.append(await create(ctx, key, pk))
    for match in list(ctx.index.matches):
        report.lines.append(await update(ctx, match))
    return report


def create_body(ctx: FilamentSync, item: StockItem, info: PartInfo, url: str) -> dict[str, Any]:
    """The ``POST /inventory/spools`` body for an InvenTree spool (defaults where InvenTree has no value)."""
    s = ctx.settings
    label = info.label_weight or s.filament_default_label_weight
    core = info.core_weight if info.core_weight is not None else s.filament_default_core_weight
    grams = item.quantity * (info.grams_per_unit or 1.0)
    batch = item.batch or ""
    body: dict[str, Any] = {
        "material": (info.material or s.filament_default_material)[:MATERIAL_MAX],
        "label_weight": int(label),
        "core_weight": int(core),
        "weight_used": round(min(max(0.0, label - grams), float(label)), 1),
        "weight_locked": False,
        ctx.source: tag_value(batch, ctx.source),
        "note": truncate(
            f"InvenTree stock item {item.pk} ({info.name or f'part {item.part}'}), batch {batch}: {url} "
            "(created by farmsync)",
            NOTE_MAX,
        ),
    }
    for field in ("color_name", "rgba", "brand"):
        value = getattr(info, field)
        if value:
            body[field] = value
    return body


def changes_for(spool: Spool, info: PartInfo) -> dict[str, Any]:
    """What InvenTree knows that the Bambuddy spool shows differently (never ``weight_used``)."""
    out: dict[str, Any] = {}
    if info.material and info.material[:MATERIAL_MAX] != (spool.material or ""):
        out["material"] = info.material[:MATERIAL_MAX]
    if info.color_name and info.color_name != (spool.color_name or ""):
        out["color_name"] = info.color_name
    if info.rgba and info.rgba != (spool.rgba or "").upper():
        out["rgba"] = info.rgba
    if info.brand and info.brand != (spool.brand or ""):
        out["brand"] = info.brand
    if info.label_weight is not None and float(info.label_weight) != float(spool.label_weight or -1):
        out["label_weight"] = info.label_weight
    if info.core_weight is not None and float(info.core_weight) != float(spool.core_weight or -1):
        out["core_weight"] = info.core_weight
    return out


async def update(ctx: FilamentSync, match: Match) -> SpoolLine:
    line = SpoolLine(
        batch=match.batch,
        stock_item=match.item,
        spool_id=match.spool,
        action="update",
        outcome=Outcome.UNCHANGED,
    )
    spool = ctx.spools[match.spool]
    if spool.is_archived:
        line.reason = "archived in Bambuddy: left as it is"
        return line
    item = ctx.items.get(match.item)
    if item is None:
        line.reason = "the InvenTree stock item was depleted in this run"
        return line
    try:
        info = await ctx.part(item)
        changes = changes_for(spool, info)
        if not changes:
            return line
        line.changes = changes
        write = ctx.executor.write(
            "bambuddy",
            "PATCH",
            f"/inventory/spools/{spool.id}",
            changes,
            f"update spool {spool.id} from batch {match.batch}",
        )
        answer = await ctx.executor.run(write)
    except FarmsyncError as exc:
        line.outcome, line.error = Outcome.FAILED, str(exc)
        return line
    if isinstance(answer, dict):
        ctx.spool_updated(Spool.model_validate(answer))
    line.outcome = Outcome.PLANNED if ctx.dry_run else Outcome.APPLIED
    return line


async def create(ctx: FilamentSync, key: TagKey, pk: int) -> SpoolLine:
    """Create the Bambuddy spool of InvenTree item ``pk`` exactly once (see the module doc)."""
    item = ctx.items.get(pk)
    line = SpoolLine(
        batch=item.batch if item else None, stock_item=pk, action="create", outcome=Outcome.SKIPPED
    )
    if item is None:
        line.reason = "the InvenTree stock item was depleted in this run"
        return line
    try:
        info = await ctx.part(item)
        if info.grams_per_unit is None:
            line.reason = f"part {item.part} counts stock in {info.units!r}, not grams or kg"
            return line
        body = create_body(ctx, item, info, await ctx.inventree.part_web_url(item.part))
    except FarmsyncError as exc:
        line.outcome, line.error = Outcome.FAILED, str(exc)
        return line
    line.changes = body
    write = ctx.executor.write(
        "bambuddy", "POST", "/inventory/spools", body, f"create a spool for batch {item.batch}"
    )
    claim_key = str(key)
    for _ in range(MAX_GENERATIONS):
        if ctx.dry_run:
            record = await ctx.store.get(SPOOL_NS, claim_key)
            claim = None
        else:
            claim = await ctx.store.claim(SPOOL_NS, claim_key, lease_seconds=ctx.settings.lease_seconds)
            record = claim.record
        if record is not None and record.state is State.DONE:
            made = (record.result or {}).get("spool_id")
            known = made in ctx.spools
            if made is None or await _still_there(ctx, int(made)):
                line.spool_id, line.outcome = made, Outcome.UNCHANGED
                line.reason = f"farmsync already created spool {made} for this batch" + (
                    "; its tag was changed in Bambuddy since" if known else ""
                )
                return line
            claim_key = f"{key}|after:{made}"  # that spool was deleted in Bambuddy: create it once more
            continue
        if claim is None:
            return await _plan_create(ctx, line, record, write)
        if not claim.held:
            line.outcome = Outcome.PARKED if claim.outcome is ClaimOutcome.PARKED else Outcome.PENDING
            line.reason = "being created by another run" if claim.outcome is ClaimOutcome.BUSY else None
            line.error = record.last_error if record else None
            return line
        return await _create_held(ctx, line, claim, write, item)
    line.outcome, line.error = Outcome.FAILED, "the spool was deleted in Bambuddy too many times"
    return line


async def _plan_create(ctx: FilamentSync, line: SpoolLine, record: Record | None, write: Write) -> SpoolLine:
    """Dry run: the create a real run would make, unless another run holds it or it waits to retry."""
    now = ctx.now()
    if record is not None and record.state is State.PARKED:
        line.outcome, line.error = Outcome.PARKED, record.last_error
        return line
    if record is not None and record.state is State.CLAIMED and (record.lease_until or 0) > now:
        line.outcome, line.reason = Outcome.PENDING, "being created by another run"
        return line
    await ctx.executor.run(write)
    line.outcome = Outcome.PLANNED
    return line


async def _create_held(
    ctx: FilamentSync, line: SpoolLine, claim: Claim, write: Write, item: StockItem
) -> SpoolLine:
    label = f"spool-create:{claim.key}"
    ctx.hook("spool_after_claim", label)
    try:
        existing = await _find_existing(ctx, item) if claim.takeover else None
        if existing is not None:
            await ctx.store.complete(claim, {"spool_id": existing.id, "stock_item": item.pk, "found": True})
            ctx.spool_created(existing)
            line.spool_id, line.outcome = existing.id, Outcome.UNCHANGED
            line.reason = "an interrupted run had already created it"
            return line
        answer = await ctx.executor.run(write)
        spool = Spool.model_validate(answer)
        ctx.hook("spool_after_create", label)
        await ctx.store.complete(claim, {"spool_id": spool.id, "stock_item": item.pk, "batch": item.batch})
    except LeaseLost as exc:
        line.outcome, line.reason, line.error = Outcome.PENDING, "taken over by another run", str(exc)
        return line
    except (FarmsyncError, OSError, ValueError) as exc:
        record = await ctx.store.release(claim, str(exc), max_attempts=ctx.settings.sync_max_attempts)
        line.outcome = Outcome.PARKED if record.state is State.PARKED else Outcome.FAILED
        line.error = str(exc)
        return line
    ctx.spool_created(spool)
    line.spool_id, line.outcome = spool.id, Outcome.APPLIED
    action(log, "bambuddy spool created", spool=spool.id, stock_item=item.pk, batch=item.batch)
    return line


async def _find_existing(ctx: FilamentSync, item: StockItem) -> Spool | None:
    """A spool for the item's batch made by an earlier, interrupted attempt (read fresh, not from the view)."""
    wanted = batch_keys(item.batch, ctx.source)
    found = [s for s in await ctx.bambuddy.spools(include_archived=True) if spool_keys(s) & wanted]
    if len(found) > 1:
        raise FarmsyncError(
            f"{len(found)} Bambuddy spools carry batch {item.batch!r}: resolve the conflict in Bambuddy"
        )
    return found[0] if found else None


async def _still_there(ctx: FilamentSync, spool_id: int) -> bool:
    if spool_id in ctx.spools:
        return True
    try:
        ctx.spool_created(await ctx.bambuddy.get_spool(spool_id))
    except UpstreamNotFound:
        return False
    return True
