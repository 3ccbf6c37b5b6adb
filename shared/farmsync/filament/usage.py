"""Bambuddy usage → InvenTree: each successful usage row subtracts its grams from the spool, exactly once.

``/inventory/usage`` has no paging and no archive id: the newest FILAMENT_USAGE_LIMIT rows are read and the row
id is the cursor. For each new row (oldest first):

1. rows whose status is not in FILAMENT_USAGE_SUCCESS_STATUSES, or under FILAMENT_MIN_DEDUCTION_GRAMS, are
   skipped; a row over FILAMENT_MAX_DEDUCTION_GRAMS is refused and parked for a person to look at;
2. the row's Bambuddy spool is matched to an InvenTree item; without a match the row stays pending (retried
   every run, listed on the status page) and nothing is claimed, so waiting never counts as a failure;
3. a row the store has not seen done is looked up in InvenTree's stock history first (:mod:`.ledger`: the
   history is the ledger, the store a cache), so an empty store never charges a row twice;
4. claim ``filament-usage:<id>``; read the item; record the **intent** in the store (item, part, amount, and
   whether the removal will deplete it) *before* the removal; remove with the notes marker
   ``bambuddy:usage:<id>:`` (delimited, so ``usage:4:`` is never a prefix of ``usage:42:``); mark done.

Rows of one spool run in order, one after another; different spools run side by side (SYNC_CONCURRENCY at
once), because their removals touch different stock items.

A removal that empties an item deletes it when ``delete_on_deplete`` is on, and before API 450 its history goes
with it (450–518 keep the history but not the final removal). That is why the intent comes first: after a crash
between the removal and the done-mark, a takeover looks for the marker in the tracking history (compared
exactly; by part on API ≥ 450); failing that, an item that is gone was depleted by our removal if the intent
said so. A removal is never larger than what is left (the shortfall is reported), depleted batches are recorded
so later rows of the same spool finish as "nothing left to subtract" instead of pending forever, and the
item's own ``delete_on_deplete`` setting is left as InvenTree's owner chose it.

The cursor only moves over the contiguous prefix of finished rows, like the print tick. Rows left out by their
status (a failed run's partial use, by default) are summed per spool in the report, so the grams InvenTree
still counts but the spool no longer holds are visible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from farmsync import metrics
from farmsync.clients.bambuddy_models import UsageRecord
from farmsync.clients.inventree_models import StockAdjustment, StockItem
from farmsync.errors import FarmsyncError, LeaseLost, UpstreamNotFound
from farmsync.filament.context import FilamentSync
from farmsync.filament.ledger import Charge, Ledger, marker
from farmsync.filament.match import TagField, TagKey, batch_keys, spool_keys
from farmsync.filament.parts import grams_per_unit
from farmsync.filament.report import LeftOut, Outcome, UsageLine, UsageReport
from farmsync.filament.writes import Write, remove_body
from farmsync.logs import action, get_logger
from farmsync.prints.tick import run_all
from farmsync.store import Claim, Record, State, cursors
from farmsync.store import Outcome as ClaimOutcome

log = get_logger("filament")

USAGE_NS = "filament-usage"
INTENT_NS = "filament-usage-intent"
DEPLETED_NS = "filament-depleted"
USAGE_STREAM = "filament-usage"


@dataclass(frozen=True)
class Target:
    """The InvenTree item a usage row is charged to."""

    item: int
    batch: str
    key: TagKey


@dataclass(frozen=True)
class Resolution:
    target: Target | None
    reason: str | None = None
    depleted: bool = False


async def sync_usage(ctx: FilamentSync) -> UsageReport:
    """Process new usage rows oldest first and move the cursor over the finished prefix (not in a dry run)."""
    await ctx.load()
    limit = ctx.settings.filament_usage_limit
    rows = await ctx.bambuddy.usage(limit=limit)
    cursor = await ctx.store.get_cursor(USAGE_STREAM)
    after = int(cursor.value.get("id", 0)) if cursor else 0
    report = UsageReport(cursor_before=after, cursor_after=after, rows_read=len(rows))
    if rows and len(rows) >= limit and min(r.id for r in rows) > after + 1:
        report.warnings.append(
            f"usage rows {after + 1}..{min(r.id for r in rows) - 1} were not in the newest {limit} rows: "
            "some may have been missed; raise FILAMENT_USAGE_LIMIT"
        )
    fresh = sorted((r for r in rows if r.id > after), key=lambda r: r.id)
    ctx.usage_rows = rows
    ctx.ledger = Ledger.for_rows(ctx.inventree, [r.created_at for r in fresh])
    report.lines = await usage_lanes(ctx, fresh)
    report.left_out = left_out(ctx, fresh)
    report.history_reads = ctx.ledger.reads
    if not ctx.dry_run:
        high = after
        for line in report.lines:
            if not line.finished:
                break
            high = line.usage_id
        if high > after:
            high = await advance_cursor(ctx, high)
        report.cursor_after = high
    return report


async def usage_lanes(ctx: FilamentSync, rows: list[UsageRecord]) -> list[UsageLine]:
    """Every row once, in id order within its spool and spools side by side; the lines in id order."""
    lanes: dict[int, list[UsageRecord]] = {}
    for row in rows:
        lanes.setdefault(row.spool_id, []).append(row)
    waiting = list(lanes.values())
    lines: list[UsageLine] = []

    async def worker() -> None:
        while waiting:
            lane = waiting.pop(0)
            for index, row in enumerate(lane):
                line = await usage_row(ctx, row)
                lines.append(line)
                # A spool empties in the order it was used: a row not done in this run holds back the rest.
                if line.outcome in (Outcome.FAILED, Outcome.PENDING):
                    lines.extend(held_back(later, row) for later in lane[index + 1 :])
                    break

    await run_all([worker() for _ in range(max(1, min(ctx.settings.sync_concurrency, len(lanes))))])
    return sorted(lines, key=lambda line: line.usage_id)


def held_back(row: UsageRecord, blocker: UsageRecord) -> UsageLine:
    """A row left for the next run because an earlier row of its spool is not finished.

    Charging it first could empty the spool out of order: the earlier row would then find nothing left, and
    InvenTree would end up charged for different prints than a run without the failure would charge."""
    return line_for(row, Outcome.PENDING, reason=f"waits for usage row {blocker.id} of the same spool")


def line_for(row: UsageRecord, outcome: Outcome, *, reason: str | None = None) -> UsageLine:
    return UsageLine(
        usage_id=row.id,
        spool_id=row.spool_id,
        status=row.status,
        grams=round(row.weight_used, 3),
        print_name=row.print_name,
        outcome=outcome,
        reason=reason,
    )


def counted(ctx: FilamentSync, row: UsageRecord) -> bool:
    """Whether the row's status is one FILAMENT_USAGE_SUCCESS_STATUSES subtracts."""
    wanted = {status.strip().casefold() for status in ctx.settings.filament_usage_success_statuses}
    return (row.status or "").strip().casefold() in wanted


def left_out(ctx: FilamentSync, rows: list[UsageRecord]) -> list[LeftOut]:
    """Per spool, the grams of rows skipped for their status (a failed run's partial use): Bambuddy has
    added them to the spool's weight_used, InvenTree still counts them."""
    out: dict[int, LeftOut] = {}
    for row in sorted(rows, key=lambda r: r.id):
        if counted(ctx, row) or row.weight_used <= 0:
            continue
        entry = out.get(row.spool_id)
        if entry is None:
            spool = ctx.spools.get(row.spool_id)
            match = ctx.index.by_spool.get(row.spool_id)
            entry = out[row.spool_id] = LeftOut(
                spool_id=row.spool_id,
                batch=match.batch if match else None,
                material=spool.material if spool else None,
                color_name=spool.color_name if spool else None,
            )
        entry.grams = round(entry.grams + row.weight_used, 3)
        entry.rows += 1
        status = (row.status or "unknown").strip().casefold()
        entry.statuses[status] = entry.statuses.get(status, 0) + 1
    return sorted(out.values(), key=lambda e: e.spool_id)


async def usage_row(ctx: FilamentSync, row: UsageRecord) -> UsageLine:
    """One usage row, end to end; never raises for upstream trouble (the row is released and retried)."""
    s = ctx.settings
    line = line_for(row, Outcome.SKIPPED)
    if not counted(ctx, row):
        line.reason = f"status {row.status!r} is not in FILAMENT_USAGE_SUCCESS_STATUSES"
        return line
    if row.weight_used < s.filament_min_deduction_grams:
        minimum = s.filament_min_deduction_grams
        line.reason = f"{row.weight_used:g} g is below FILAMENT_MIN_DEDUCTION_GRAMS ({minimum:g} g)"
        return line
    key = str(row.id)
    record = await ctx.store.get(USAGE_NS, key)
    if record is not None and record.state is State.DONE:
        return _done(line, record)
    if record is not None and record.state is State.PARKED:
        line.outcome, line.error = Outcome.PARKED, record.last_error
        return line
    resolution = await resolve(ctx, row)
    if resolution.target is not None:
        line.stock_item, line.batch = resolution.target.item, resolution.target.batch
    intent = await ctx.store.get_value(INTENT_NS, key) if record is not None else None
    if row.weight_used > s.filament_max_deduction_grams and intent is None:
        return await _refuse(ctx, row, line)
    known: dict[str, Any] | None = None
    if intent is None:
        try:
            known, resolution = await consult_ledger(ctx, row, resolution)
        except (FarmsyncError, OSError) as exc:  # no write without looking first: retried next run
            line.outcome, line.error = Outcome.FAILED, f"could not read InvenTree's stock history: {exc}"
            return line
    if resolution.target is None and not resolution.depleted and intent is None and known is None:
        line.outcome, line.reason = Outcome.PENDING, resolution.reason
        return line
    if ctx.dry_run:
        return await _plan(ctx, row, line, record, resolution, intent, known)
    claim = await ctx.store.claim(USAGE_NS, key, lease_seconds=s.lease_seconds)
    if not claim.held:
        return _not_held(line, claim)
    label = f"usage:{key}"
    ctx.hook("after_claim", label)
    try:
        if claim.takeover or record is not None:
            intent = await ctx.store.get_value(INTENT_NS, key)
        result = await recover(ctx, row, intent) if intent else known
        if result is not None and result is known and result.get("depleted"):
            await mark_depleted(ctx, _keys(ctx, row, result.get("batch")), row.id, result.get("stock_item"))
        if result is None:
            if resolution.target is None:
                if not resolution.depleted:
                    raise FarmsyncError(resolution.reason or "no matching InvenTree spool")
                result = _depleted_result(row)
            else:
                result = await _charge(ctx, row, resolution.target)
        ctx.hook("before_done", label)
        await ctx.store.complete(claim, result)
    except LeaseLost as exc:
        # Our lease ran out mid-row and another run took it over: it looks before it writes, so leave it be.
        line.outcome, line.reason, line.error = Outcome.PENDING, "taken over by another run", str(exc)
        return line
    except (FarmsyncError, OSError) as exc:
        released = await ctx.store.release(claim, str(exc), max_attempts=s.sync_max_attempts)
        line.outcome = Outcome.PARKED if released.state is State.PARKED else Outcome.FAILED
        line.error = str(exc)
        action(log, "filament usage failed", 30, usage=row.id, error=str(exc), attempts=claim.attempts)
        return line
    await ctx.store.delete_value(INTENT_NS, key)
    _fill(line, result)
    if result.get("outcome") == "charged" and not result.get("recovered"):
        line.outcome = Outcome.APPLIED
        spool = ctx.spools.get(row.spool_id)
        metrics.grams_subtracted(line.charged_grams, spool.material if spool else None)
    else:
        line.outcome = Outcome.UNCHANGED if result.get("recovered") else Outcome.SKIPPED
    action(
        log,
        "filament usage subtracted",
        usage=row.id,
        stock_item=result.get("stock_item"),
        grams=result.get("charged_grams"),
        outcome=result.get("outcome"),
        recovered=result.get("recovered"),
    )
    return line


async def resolve(ctx: FilamentSync, row: UsageRecord) -> Resolution:
    """The InvenTree item a row's spool matches, or why there is none (and whether the batch is depleted)."""
    spool = ctx.spools.get(row.spool_id)
    if spool is None:
        return Resolution(None, f"Bambuddy spool {row.spool_id} is not in Bambuddy's spool list")
    conflict = ctx.index.conflicted_spools.get(spool.id)
    if conflict is not None:
        return Resolution(None, f"conflict: {conflict.detail}")
    match = ctx.index.by_spool.get(spool.id)
    if match is not None:
        if match.item in ctx.items:
            return Resolution(Target(match.item, match.batch, match.key))
        return Resolution(None, f"InvenTree stock item {match.item} was depleted in this run", depleted=True)
    keys = spool_keys(spool)
    if spool.id in ctx.index.shadowed:
        return Resolution(
            None,
            f"spool {spool.id} is archived and its tag now belongs to spool {ctx.index.shadowed[spool.id]}",
        )
    if not keys:
        return Resolution(None, f"Bambuddy spool {spool.id} has no tag_uid or tray_uuid to match a batch")
    for name, key in sorted(keys):
        if await ctx.store.get_value(DEPLETED_NS, f"{name}:{key}"):
            return Resolution(None, "the InvenTree spool was depleted earlier", depleted=True)
    tags = ", ".join(f"{name}={getattr(spool, name)}" for name, _ in sorted(keys))
    return Resolution(
        None, f"no InvenTree filament stock item has a batch matching spool {spool.id} ({tags})"
    )


async def consult_ledger(
    ctx: FilamentSync, row: UsageRecord, resolution: Resolution
) -> tuple[dict[str, Any] | None, Resolution]:
    """Look the row up in InvenTree's history (one read per scope per run, see :mod:`.ledger`).

    Returns the done-result when the row was already subtracted, and the resolution, turned into "depleted"
    when the spool has no stock item left and the history shows its item ran out.
    """
    ledger = ctx.ledger
    assert ledger is not None, "sync_usage sets the run's ledger"
    target = resolution.target
    spool = ctx.spools.get(row.spool_id)
    if target is not None:
        item = ctx.items.get(target.item)
        await ledger.read_item(target.item, item.part if item else None)
    elif not resolution.depleted and spool is not None and spool_keys(spool):
        await ledger.probe(row.spool_id, row.id)  # a tagged spool with no stock item: did it run out?
    hit = ledger.lookup(row.spool_id, row.id)
    if hit is not None:
        return _charged(ctx, row, target, hit), resolution
    ran_out = ledger.ran_out.get(row.spool_id)
    if target is None and not resolution.depleted and ran_out is not None:
        reason = f"the InvenTree spool ran out ({ran_out.ran_out_text()}): nothing left to subtract"
        return None, Resolution(None, reason, depleted=True)
    return None, resolution


def _charged(ctx: FilamentSync, row: UsageRecord, target: Target | None, hit: Charge) -> dict[str, Any]:
    """The done-result of a row whose removal the ledger found."""
    item = ctx.items.get(target.item) if target else None
    per = grams_per_unit(item.part_detail.units if item and item.part_detail else None)
    charged = round(hit.removed * per, 3) if hit.removed is not None and per is not None else None
    return {
        "usage_id": row.id,
        "stock_item": hit.item if hit.item is not None else (target.item if target else None),
        "part": hit.part,
        "batch": target.batch if target else None,
        "grams": row.weight_used,
        "outcome": "charged",
        "charged_grams": charged,
        "depleted": hit.depleted,
        "recovered": "ledger",
    }


def _keys(ctx: FilamentSync, row: UsageRecord, batch: str | None) -> set[tuple[TagField, TagKey]]:
    """The depleted-marks to write: the batch's keys, or the spool's when the item (and batch) is gone."""
    if batch:
        return batch_keys(batch, ctx.source)
    spool = ctx.spools.get(row.spool_id)
    return spool_keys(spool) if spool else set()


async def recover(ctx: FilamentSync, row: UsageRecord, intent: dict[str, Any]) -> dict[str, Any] | None:
    """After an interrupted attempt: the result if its removal landed (or the item is gone), else None."""
    pk = int(intent["stock_item"])
    part = intent.get("part")
    try:
        found = await ctx.inventree.find_tracking(marker(row.id), item=pk, part=part)
    except UpstreamNotFound:
        found = []  # the item was deleted and this server filters history by item only
    if found:
        removed = (found[0].deltas or {}).get("removed")
        per = float(intent.get("grams_per_unit") or 1.0)
        charged = float(removed) * per if isinstance(removed, int | float) else intent.get("charged_grams")
        left = (found[0].deltas or {}).get("quantity")
        depleted = bool(intent.get("depleting")) or (isinstance(left, int | float) and left <= 0)
        if depleted and not ctx.dry_run:
            await mark_depleted(ctx, intent.get("batch") or "", row.id, pk)
        return {
            **intent,
            "outcome": "charged",
            "charged_grams": charged,
            "depleted": depleted,
            "recovered": "tracking",
        }
    try:
        await ctx.inventree.get_stock(pk)
    except UpstreamNotFound:
        if intent.get("depleting"):
            if not ctx.dry_run:
                await mark_depleted(ctx, intent.get("batch") or "", row.id, pk)
            return {**intent, "outcome": "charged", "depleted": True, "recovered": "depleted"}
        return {
            **intent,
            "outcome": "item_gone",
            "charged_grams": None,
            "recovered": "item_gone",
            "reason": "the stock item was deleted before this removal could be confirmed; nothing left to charge",
        }
    return None


async def _charge(ctx: FilamentSync, row: UsageRecord, target: Target) -> dict[str, Any]:
    """Charge ``row`` to the run's view of the item (read at the start, kept current by each removal), and
    read it afresh only when the removal would empty it, where the exact quantity decides the amount (other
    changes can only lower it, and InvenTree clamps a removal to what is there)."""
    item = ctx.items.get(target.item)
    per = grams_per_unit(item.part_detail.units if item and item.part_detail else None)
    if item is not None and per is not None and row.weight_used / per < item.quantity:
        return await deduct(ctx, row, target, item)
    try:
        item = await ctx.inventree.get_stock(target.item)
    except UpstreamNotFound:
        raise FarmsyncError(
            f"InvenTree stock item {target.item} is gone; the row is matched again on the next run"
        ) from None
    return await deduct(ctx, row, target, item)


async def deduct(ctx: FilamentSync, row: UsageRecord, target: Target, item: StockItem) -> dict[str, Any]:
    """Plan (dry) or make the removal for ``row`` from ``item``; never more than the item holds."""
    units = item.part_detail.units if item.part_detail else None
    per = grams_per_unit(units)
    if per is None:
        raise FarmsyncError(
            f"part {item.part} counts stock in {units!r}, not grams or kg: cannot subtract grams"
        )
    base = {
        "usage_id": row.id,
        "stock_item": item.pk,
        "part": item.part,
        "batch": target.batch,
        "grams": row.weight_used,
        "grams_per_unit": per,
    }
    have = item.quantity
    if have <= 0:
        if not ctx.dry_run:
            await mark_depleted(ctx, target.batch, row.id, item.pk)
        ctx.removed(item.pk, 0.0, gone=True)
        return {**base, "outcome": "depleted", "charged_grams": 0.0, "depleted": True}
    want = row.weight_used / per
    amount = min(want, have)
    depleting = round(amount, 5) >= round(have, 5)
    intent = {
        **base,
        "quantity_before": have,
        "amount": round(amount, 5),
        "charged_grams": round(amount * per, 3),
        "depleting": depleting,
        "shortfall_grams": round(max(0.0, want - have) * per, 3),
        "at": time.time(),
    }
    key = str(row.id)
    if not ctx.dry_run:
        await ctx.store.put_value(INTENT_NS, key, intent)
    write = ctx.executor.write(
        "inventree",
        "POST",
        "/api/stock/remove/",
        remove_body(item.pk, amount, marker(row.id)),
        f"usage {row.id}: {row.weight_used:g} g from batch {target.batch}",
    )
    answer, landed = await _remove(ctx, row, intent, write)
    if landed is not None:  # a locked answer, then the history showed the removal had landed after all
        ctx.removed(item.pk, have - amount, gone=bool(landed.get("depleted")))
        return landed
    gone = depleting
    if not ctx.dry_run:
        ctx.hook("after_remove", f"usage:{key}")
        echo = StockAdjustment.model_validate(answer) if isinstance(answer, dict) else None
        gone = gone or bool(echo and echo.items and echo.items[0].pk is None)
        if gone:
            await mark_depleted(ctx, target.batch, row.id, item.pk)
    ctx.removed(item.pk, have - amount, gone=gone)
    return {**intent, "outcome": "charged", "depleted": gone}


async def _remove(
    ctx: FilamentSync, row: UsageRecord, intent: dict[str, Any], write: Write
) -> tuple[Any, dict[str, Any] | None]:
    """Send the removal; while InvenTree on SQLite answers ``database is locked``, send it again, but only after
    its history shows it did not land (the reference: such a write was rolled back; retry only a write known not
    to have happened). Returns InvenTree's answer, or the done-result when the history shows it landed.

    Without this a locked removal failed its row into the 30 s backoff, and repeated locks could park it."""
    tries = 0

    async def attempt() -> tuple[Any, dict[str, Any] | None]:
        nonlocal tries
        tries += 1
        if tries == 1:
            return await ctx.executor.run(write), None
        landed = await recover(ctx, row, intent)
        if landed is not None:
            return None, landed
        return await ctx.executor.send_again(write), None

    return await ctx.inventree.retry_locked(attempt)


async def mark_depleted(
    ctx: FilamentSync, batch: str | set[tuple[TagField, TagKey]], usage_id: int, item: int | None
) -> None:
    """Remember that ``batch`` (or these tag keys) ran out, so later rows of its spool finish instead of
    waiting for a match."""
    keys = batch_keys(batch, ctx.source) if isinstance(batch, str) else batch
    label = batch if isinstance(batch, str) else ", ".join(str(k) for _, k in sorted(keys))
    value = {"batch": label, "stock_item": item, "usage_id": usage_id, "at": time.time()}
    for name, key in sorted(keys):
        await ctx.store.put_value(DEPLETED_NS, f"{name}:{key}", value)


async def advance_cursor(ctx: FilamentSync, value: int) -> int:
    """Move the usage cursor forward to ``value`` unless another run moved it further."""
    return await cursors.advance(ctx.store, USAGE_STREAM, value)


# --- helpers ---------------------------------------------------------------------------------------------------


async def _refuse(ctx: FilamentSync, row: UsageRecord, line: UsageLine) -> UsageLine:
    s = ctx.settings
    message = (
        f"refused: {row.weight_used:g} g is more than FILAMENT_MAX_DEDUCTION_GRAMS "
        f"({s.filament_max_deduction_grams:g} g) for one deduction"
    )
    line.outcome, line.error = Outcome.PARKED, message
    if ctx.dry_run:
        return line
    claim = await ctx.store.claim(USAGE_NS, str(row.id), lease_seconds=s.lease_seconds)
    if not claim.held:
        return _not_held(line, claim)
    await ctx.store.release(claim, message, max_attempts=1)
    action(log, "filament usage refused", 30, usage=row.id, grams=row.weight_used)
    return line


async def _plan(
    ctx: FilamentSync,
    row: UsageRecord,
    line: UsageLine,
    record: Record | None,
    resolution: Resolution,
    intent: dict[str, Any] | None,
    known: dict[str, Any] | None = None,
) -> UsageLine:
    """The dry-run twin of the claimed path: reads only, plans the removal a real run would make."""
    now = ctx.now()
    if record is not None and record.state is State.CLAIMED and (record.lease_until or 0) > now:
        line.outcome, line.reason = Outcome.PENDING, "being processed by another run"
        return line
    if record is not None and record.state is State.FAILED and (record.not_before or 0) > now:
        line.outcome, line.reason, line.error = Outcome.PENDING, "waiting to retry", record.last_error
        return line
    try:
        result = await recover(ctx, row, intent) if intent else known
        if result is not None:
            _fill(line, result)
            line.outcome, line.reason = (
                Outcome.UNCHANGED,
                "would be marked done: " + _recovered_reason(result),
            )
            return line
        if resolution.target is None:
            if not resolution.depleted:
                line.outcome, line.reason = Outcome.PENDING, resolution.reason
                return line
            line.outcome, line.depleted = Outcome.SKIPPED, True
            line.reason = "would be marked done: the InvenTree spool is depleted, nothing left to subtract"
            return line
        item = ctx.items[resolution.target.item]
        result = await deduct(ctx, row, resolution.target, item)
    except FarmsyncError as exc:
        line.outcome, line.error = Outcome.FAILED, str(exc)
        return line
    _fill(line, result)
    line.outcome = Outcome.PLANNED if result.get("outcome") == "charged" else Outcome.SKIPPED
    return line


def _depleted_result(row: UsageRecord) -> dict[str, Any]:
    return {
        "usage_id": row.id,
        "outcome": "depleted",
        "grams": row.weight_used,
        "charged_grams": 0.0,
        "depleted": True,
        "reason": "the InvenTree spool was depleted earlier: nothing left to subtract",
    }


def _recovered_reason(result: dict[str, Any]) -> str:
    how = result.get("recovered")
    if how == "tracking":
        return "the removal of an interrupted run had already been made (found in the stock history)"
    if how == "depleted":
        return "the removal of an interrupted run had depleted the item (InvenTree deleted it)"
    if how == "ledger":
        return "already subtracted: its removal is in InvenTree's stock history"
    return str(result.get("reason") or "the stock item is gone")


def _fill(line: UsageLine, result: dict[str, Any]) -> None:
    line.stock_item = result.get("stock_item", line.stock_item)
    line.batch = result.get("batch", line.batch)
    charged = result.get("charged_grams")
    line.charged_grams = round(float(charged), 3) if isinstance(charged, int | float) else None
    line.depleted = bool(result.get("depleted"))
    line.recovered = bool(result.get("recovered"))
    if result.get("recovered"):
        line.reason = _recovered_reason(result)
    elif result.get("outcome") == "depleted":
        line.reason = result.get("reason") or "the InvenTree spool is depleted: nothing left to subtract"
    elif result.get("shortfall_grams"):
        line.reason = (
            f"only {line.charged_grams:g} g were left: the item is depleted "
            f"({result['shortfall_grams']:g} g of the usage could not be subtracted)"
        )
    elif result.get("depleted"):
        line.reason = "the removal depleted the item"


def _done(line: UsageLine, record: Record) -> UsageLine:
    _fill(line, record.result or {})
    line.outcome = Outcome.SKIPPED
    line.reason = "already done" + (f": {line.reason}" if line.reason else "")
    return line


def _not_held(line: UsageLine, claim: Claim) -> UsageLine:
    record = claim.record
    if claim.outcome is ClaimOutcome.DONE and record is not None:
        return _done(line, record)
    if claim.outcome is ClaimOutcome.PARKED:
        line.outcome, line.error = Outcome.PARKED, record.last_error if record else None
        return line
    line.outcome = Outcome.PENDING
    line.reason = (
        "being processed by another run" if claim.outcome is ClaimOutcome.BUSY else "waiting to retry"
    )
    line.error = record.last_error if record else None
    return line
