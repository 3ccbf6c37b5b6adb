"""One print becomes InvenTree stock, exactly once.

A *unit* is what gets one StockItem: a completed print-log run (SYNC_UNIT=run) or an archive (SYNC_UNIT=archive,
one item per archive as the older tool made them). For each unit:

1. claim ``run:<id>`` (or ``archive:<id>``) in the store; a key that is done, held elsewhere or backing off is
   reported and left alone;
2. find the Part by its stable IPN (cached in the store), or create it under a claim on the IPN so that
   concurrent workers never create two;
3. create the StockItem with the unit's batch. On any retry or takeover the batch is looked up first, so a crash
   between "created" and "marked done" never makes a second item; an archive-batch item (``bambuddy-<archive>``,
   as the older tool wrote them) stands for the archive's earliest completed run;
4. set ``Weight``/``PrintTime``, the part image and the archive's back-link (idempotent upserts);
5. mark the unit done with what was written.

A failure releases the claim with backoff (parked after SYNC_MAX_ATTEMPTS). Nothing is ever deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from farmsync import metrics
from farmsync.errors import FarmsyncError, LeaseLost, UpstreamNotFound, UpstreamValidation
from farmsync.logs import action, get_logger
from farmsync.prints import keys, page
from farmsync.prints.report import ItemOutcome, ItemReport, retry_time
from farmsync.settings import Settings
from farmsync.store import AsyncStore, Claim, Outcome

if TYPE_CHECKING:
    from farmsync.clients.bambuddy import BambuddyClient
    from farmsync.clients.bambuddy_models import Archive, PrintLogEntry
    from farmsync.clients.inventree import InvenTreeClient
    from farmsync.clients.inventree_models import ParameterTemplate

log = get_logger("prints")

PART_NS = "part"  # claims on an IPN while its part is found or created
PART_CACHE = "part-cache"  # IPN -> {"pk", "image", "params"}
META_NS = "meta"
WEIGHT_TEMPLATE = "Weight"
PRINT_TIME_TEMPLATE = "PrintTime"
IN_PROGRESS = frozenset({"printing", "paused", "running", "pending", "queued"})
HELD_REASON = "held by another worker's claim"
WAITING_REASON = "waiting to retry after a failure"
ARCHIVE_DELETED = "archive deleted in Bambuddy (it answers 404): nothing to sync"
ARCHIVE_CACHE = 256
"""Archives a PrintSync keeps after reading them (the most recently used): reprints close together share one
read, and a backfill of a long print log does not hold every archive it has seen."""
INVENTREE_LINK = re.compile(r"/(web|platform)?/?part/\d+/?(details)?/?$")


class Skip(FarmsyncError):
    """The unit needs no stock (not a print, no part key, archive gone): report it and move on."""


@dataclass(frozen=True)
class Unit:
    """One unit of stock and what is known about it before the archive is read."""

    namespace: str  # "run" or "archive"
    key: str
    archive_id: int | None
    run_id: int | None
    batch: str | None
    status: str | None
    printer: str | None = None
    name: str | None = None  # the print's name, for people
    finished_at: float | None = None  # when the print ended (epoch seconds), for the page

    @property
    def label(self) -> str:
        return f"{self.namespace}:{self.key}"


def run_unit(entry: PrintLogEntry) -> Unit:
    """A print-log row as a unit (run mode)."""
    archive_id = entry.archive_id
    batch = keys.run_batch(archive_id, entry.id) if archive_id is not None else None
    ended = entry.completed_at or entry.started_at
    return Unit(
        "run",
        str(entry.id),
        archive_id,
        entry.id,
        batch,
        entry.status,
        entry.printer_name,
        entry.print_name,
        ended.timestamp() if ended else None,
    )


def archive_unit(archive: Archive) -> Unit:
    """An archive as a unit (archive mode, or an archive that has no print-log runs)."""
    return Unit(
        "archive",
        str(archive.id),
        archive.id,
        None,
        keys.archive_batch(archive.id),
        archive.status,
        name=archive.print_name,
    )


Hook = Callable[[str, Unit], None]


class PrintSync:
    """Everything one process needs to sync prints; safe to share between concurrent units."""

    def __init__(
        self,
        settings: Settings,
        store: AsyncStore,
        bambuddy: BambuddyClient,
        inventree: InvenTreeClient,
        *,
        hook: Hook | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bambuddy = bambuddy
        self.inventree = inventree
        self.hook = hook or (lambda step, unit: None)
        self._archives: dict[int, asyncio.Future[Archive]] = {}
        self._templates: dict[str, ParameterTemplate | None] = {}
        self._ipn_locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}
        self._link_locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}
        self._archive_batches: bool | None = None
        self._once_lock = asyncio.Lock()

    # --- one unit ----------------------------------------------------------------------------------------------------
    async def sync_unit(self, unit: Unit, *, force: bool = False, retry_parked: bool = False) -> ItemReport:
        """Sync one unit; never raises for upstream trouble (it is reported, released and retried later)."""
        report = ItemReport(
            key=unit.label,
            name=unit.name,
            archive_id=unit.archive_id,
            run_id=unit.run_id,
            batch=unit.batch,
            outcome=ItemOutcome.SKIPPED,
        )
        if unit.status in IN_PROGRESS:
            report.outcome, report.reason = ItemOutcome.PENDING, f"still in progress (status {unit.status})"
            return report
        skip = self._skip_reason(unit)
        if skip:
            report.reason = skip
            return report
        claim = await self.store.claim(
            unit.namespace,
            unit.key,
            lease_seconds=self.settings.lease_seconds,
            retry_parked=retry_parked or force,
        )
        if not claim.held:
            return await self._not_held(unit, claim, report, force)
        report.attempts = claim.attempts
        try:
            result = await self._work(unit, claim, report, refresh_only=False)
            self.hook("before_done", unit)
            await self.store.complete(claim, result)
        except Skip as exc:
            await self.store.complete(claim, {"skipped": str(exc)})
            report.outcome, report.reason = ItemOutcome.SKIPPED, str(exc)
            return report
        except LeaseLost as exc:
            report.outcome, report.reason = (
                ItemOutcome.PENDING,
                "lease lost: another worker took this print over",
            )
            action(log, "print lease lost", 30, unit=unit.label, error=str(exc))
            return report
        except (FarmsyncError, OSError) as exc:
            record = await self.store.release(claim, str(exc), max_attempts=self.settings.sync_max_attempts)
            await page.remember_failure(self.store, unit)
            report.outcome = ItemOutcome.PARKED if record.state == "parked" else ItemOutcome.FAILED
            report.error, report.retry_at = str(exc), retry_time(record.not_before)
            metrics.print_outcome(report.outcome.value)
            action(
                log,
                "print sync failed",
                30,
                unit=unit.label,
                archive=unit.archive_id,
                error=str(exc),
                attempts=claim.attempts,
                parked=report.outcome is ItemOutcome.PARKED,
            )
            return report
        report.outcome = ItemOutcome.SYNCED
        metrics.print_outcome("synced")
        action(
            log,
            "print synced",
            unit=unit.label,
            archive=unit.archive_id,
            part=report.part,
            stock_item=report.stock_item,
            batch=unit.batch,
            writes=",".join(report.writes),
        )
        return report

    def _skip_reason(self, unit: Unit) -> str | None:
        if unit.archive_id is None:
            return "the archive was deleted in Bambuddy before it was synced"
        if unit.status == "archived":
            return "an upload, not a print (status archived)"
        if self.settings.sync_success_only and unit.status != "completed":
            return f"not a successful print (status {unit.status})"
        return None

    async def _not_held(self, unit: Unit, claim: Claim, report: ItemReport, force: bool) -> ItemReport:
        record = claim.record
        report.attempts = record.attempts if record else None
        if claim.outcome is Outcome.DONE:
            result = (record.result if record else None) or {}
            report.stock_item, report.part = result.get("stock_item"), result.get("part")
            if force and not result.get("skipped"):
                try:
                    await self._work(unit, claim, report, refresh_only=True)
                except (FarmsyncError, OSError) as exc:
                    report.outcome, report.error = ItemOutcome.FAILED, str(exc)
                    return report
                report.outcome, report.reason = ItemOutcome.REFRESHED, "parameters, image and link refreshed"
                return report
            report.reason = result.get("skipped") or "already synced"
            return report
        if claim.outcome is Outcome.PARKED:
            report.outcome, report.error = ItemOutcome.PARKED, record.last_error if record else None
            return report
        report.outcome = ItemOutcome.PENDING
        if claim.outcome is Outcome.BUSY:
            report.reason, report.retry_at = HELD_REASON, retry_time(record.lease_until if record else None)
        else:
            report.reason, report.retry_at = WAITING_REASON, retry_time(record.not_before if record else None)
        report.error = record.last_error if record else None
        return report

    async def _work(
        self, unit: Unit, claim: Claim, report: ItemReport, *, refresh_only: bool
    ) -> dict[str, Any]:
        assert unit.archive_id is not None
        try:
            archive = await self.archive(unit.archive_id)
        except UpstreamNotFound:
            # Bambuddy's default delete is soft: the run keeps archive_id, the archive answers 404 for good.
            raise Skip(ARCHIVE_DELETED) from None
        if archive.status == "archived":
            raise Skip("an upload, not a print (status archived)")
        if unit.namespace == "archive" and self.settings.sync_success_only and archive.status != "completed":
            raise Skip(f"not a successful print (status {archive.status})")
        part_pk, ipn, _fresh = await self.resolve_part(archive, report)
        report.part, report.ipn = part_pk, ipn
        self.hook("after_part", unit)
        if not refresh_only:
            report.stock_item = await self.ensure_stock(unit, claim, archive, part_pk, report)
        self.hook("after_stock", unit)
        cache = await self.store.get_value(PART_CACHE, ipn) or {}
        if (
            refresh_only
            or not cache.get("params")
            or (self.settings.sync_part_images and not cache.get("image"))
        ):
            cache = await self.prepare_part(part_pk, ipn, archive, report, cache, force=refresh_only)
        if self.settings.sync_archive_external_link:
            await self.set_link(archive, part_pk, report)
        return {
            "part": part_pk,
            "ipn": ipn,
            "stock_item": report.stock_item,
            "batch": unit.batch,
            "archive": unit.archive_id,
            "run": unit.run_id,
            **await page.page_fields(self, unit, archive, part_pk, ipn, report.stock_item),
        }

    # --- archive ------------------------------------------------------------------------------------------------------
    async def archive(self, archive_id: int) -> Archive:
        """The archive, read once per PrintSync while it is among the last ARCHIVE_CACHE used (reprints of one
        archive share it)."""
        future = self._archives.pop(archive_id, None)
        if future is not None:
            self._archives[archive_id] = future  # most recently used last
        else:
            future = asyncio.get_running_loop().create_future()
            self._archives[archive_id] = future
            try:
                future.set_result(await self.bambuddy.get_archive(archive_id))
            except BaseException as exc:
                self._archives.pop(archive_id, None)
                future.set_exception(exc)
                future.exception()  # mark retrieved: the caller re-raises below
                raise
            self._forget_old_archives()  # now that this one is done too
        return await future

    def _forget_old_archives(self) -> None:
        """Down to ARCHIVE_CACHE, least recently used first; a read still in flight stays (its own end trims)."""
        for key in list(self._archives):
            if len(self._archives) <= ARCHIVE_CACHE:
                return
            if self._archives[key].done():
                del self._archives[key]

    # --- part --------------------------------------------------------------------------------------------------------
    async def prepare_part(
        self,
        part_pk: int,
        ipn: str,
        archive: Archive,
        report: ItemReport,
        cache: dict[str, Any],
        *,
        force: bool,
        has_image: bool | None = None,
        created: bool = False,
    ) -> dict[str, Any]:
        """Parameters and image of a part (what the cache says is missing, or all when forced); cached after.

        ``created``: the part was created just now, so it has no parameters to look up."""
        cache = {**cache, "pk": part_pk}
        if force or not cache.get("params"):
            await self.set_parameters(part_pk, archive, report, created=created)
            cache["params"] = True
        if self.settings.sync_part_images and (force or not cache.get("image")):
            cache["image"] = await self.set_image(
                part_pk, ipn, archive, report, force=force, has_image=has_image
            )
        await self.store.put_value(PART_CACHE, ipn, cache)
        return cache

    async def resolve_part(self, archive: Archive, report: ItemReport) -> tuple[int, str, bool]:
        """(part pk, IPN, created or first seen now). Cached per IPN; created under a claim on the IPN.

        Whoever creates (or first finds) a part also sets its parameters and image before letting go of the
        IPN, so concurrent prints of a new part find that done instead of doing it again.
        """
        key = keys.part_key(archive, self.settings.part_key_fields)
        if key is None:
            raise Skip("no part key: the archive has none of " + ",".join(self.settings.part_key_fields))
        ipn = keys.part_ipn(key, self.settings.part_ipn_prefix)
        cached = await self.store.get_value(PART_CACHE, ipn)
        if cached and cached.get("pk"):
            return int(cached["pk"]), ipn, False
        async with keyed_lock(self._ipn_locks, ipn):
            cached = await self.store.get_value(PART_CACHE, ipn)
            if cached and cached.get("pk"):
                return int(cached["pk"]), ipn, False
            return await self._find_or_create_part(archive, ipn, report)

    async def _find_or_create_part(
        self, archive: Archive, ipn: str, report: ItemReport
    ) -> tuple[int, str, bool]:
        deadline = asyncio.get_running_loop().time() + self.settings.lease_seconds
        while True:
            claim = await self.store.claim(PART_NS, ipn, lease_seconds=60, retry_parked=True)
            if claim.held:
                try:
                    pk, has_image, created = await self._lookup_or_create(archive, ipn)
                    report.part = pk
                    await self.prepare_part(
                        pk, ipn, archive, report, {}, force=False, has_image=has_image, created=created
                    )
                except BaseException as exc:
                    if isinstance(exc, Exception):
                        await self.store.release(claim, str(exc), max_attempts=10_000, retry_after=0)
                    raise
                await self.store.complete(claim, {"pk": pk})
                return pk, ipn, True
            if claim.outcome is Outcome.DONE and claim.record and claim.record.result:
                pk = int(claim.record.result["pk"])
                await self.store.put_value(PART_CACHE, ipn, {"pk": pk})
                return pk, ipn, False
            if asyncio.get_running_loop().time() > deadline:
                raise FarmsyncError(f"part {ipn} is being created by another worker for too long")
            await asyncio.sleep(0.05)

    async def _lookup_or_create(self, archive: Archive, ipn: str) -> tuple[int, bool, bool]:
        """(part pk, it has an image, created now). Looks by IPN again before a create answered "locked" is
        tried again."""
        return await self.inventree.retry_locked(lambda: self._look_then_create(archive, ipn))

    async def _look_then_create(self, archive: Archive, ipn: str) -> tuple[int, bool, bool]:
        target = self.settings.inventree_part_category_id
        found = await self.inventree.parts_by_ipn(ipn)
        if found:
            in_category = [p for p in found if p.category == target]
            chosen = min(in_category or found, key=lambda p: p.pk)
            if len(found) > 1:
                action(
                    log,
                    "several parts share an IPN; using one",
                    30,
                    ipn=ipn,
                    chosen=chosen.pk,
                    candidates=",".join(str(p.pk) for p in found),
                )
            return chosen.pk, chosen.image is not None, False
        part = await self.inventree.create_part(
            keys.part_name(archive), ipn=ipn, description=keys.part_description(archive), category=target
        )
        action(log, "part created", ipn=ipn, part=part.pk, archive=archive.id)
        return part.pk, part.image is not None, True

    async def forget_part(self, ipn: str) -> None:
        """A cached part id InvenTree no longer knows: drop it so the next attempt looks again."""
        await self.store.delete_value(PART_CACHE, ipn)

    # --- stock -------------------------------------------------------------------------------------------------------
    async def ensure_stock(
        self, unit: Unit, claim: Claim, archive: Archive, part_pk: int, report: ItemReport
    ) -> int:
        """The unit's StockItem: found by batch when an earlier attempt may have made it, else created.

        A create answered ``database is locked`` is tried again, after looking by batch again."""
        return await self.inventree.retry_locked(
            lambda: self._look_then_create_stock(unit, claim, archive, part_pk, report)
        )

    async def _look_then_create_stock(
        self, unit: Unit, claim: Claim, archive: Archive, part_pk: int, report: ItemReport
    ) -> int:
        assert unit.batch is not None
        # Look before writing, always: on a retry or takeover an earlier attempt may have created it, and a
        # store that lost its data (or a move from SQLite to Firestore) must not make a second item either.
        existing = await self.inventree.list_stock(batch=unit.batch)
        if existing:
            report.writes.append("stock:found-after-retry" if claim.takeover else "stock:found-existing")
            return min(existing, key=lambda s: s.pk).pk
        adopted = await self._archive_batch_item(unit)
        if adopted is not None:
            report.writes.append("stock:adopted-archive-batch")
            return adopted
        quantity = archive.quantity or self.settings.default_stock_quantity
        # Fencing: make sure the lease is still ours right before the one write that must not happen twice.
        await self.store.renew(claim, self.settings.lease_seconds)
        try:
            item = await self.inventree.create_stock(
                part_pk,
                quantity,
                location=self.settings.inventree_stock_location_id,
                batch=unit.batch,
                status=self.settings.inventree_stock_status,
                notes=keys.stock_notes(unit.archive_id or 0, unit.run_id, unit.printer),
            )
        except UpstreamValidation as exc:
            if "part" in exc.errors and report.ipn:
                await self.forget_part(report.ipn)
            raise
        report.writes.append("stock:created")
        return item.pk

    async def _archive_batch_item(self, unit: Unit) -> int | None:
        """In run mode, an archive's ``bambuddy-<archive>`` item (one per archive, as the older tool wrote them)
        stands for the archive's earliest completed run, so moving to per-run stock makes no second item."""
        if unit.namespace != "run" or unit.archive_id is None or not await self._archive_batches_exist():
            return None
        per_archive = await self.inventree.list_stock(batch=keys.archive_batch(unit.archive_id))
        if not per_archive:
            return None
        runs = await self.bambuddy.archive_runs(unit.archive_id)
        completed = [r.id for r in runs if r.status == "completed"]
        if completed and min(completed) == unit.run_id:
            return min(per_archive, key=lambda s: s.pk).pk
        return None

    async def _archive_batches_exist(self) -> bool:
        """Whether InvenTree holds any per-archive ``bambuddy-<n>`` batch (probed once, then cached)."""
        async with self._once_lock:
            return await self._archive_batch_probe()

    async def _archive_batch_probe(self) -> bool:
        if self._archive_batches is None:
            cached = await self.store.get_value(META_NS, "legacy-batches")
            if cached is None:
                found = await self.inventree.list_stock(batch_regex=r"^bambuddy-[0-9]+$", limit=1)
                cached = bool(found)
                await self.store.put_value(META_NS, "legacy-batches", cached)
            self._archive_batches = bool(cached)
        return self._archive_batches

    # --- parameters, image, link ---------------------------------------------------------------------------------------
    async def template(self, name: str) -> ParameterTemplate | None:
        """A parameter template by name: the client remembers found ones for the process, this run remembers
        a missing one (so a server without it is asked once per run, not once per part)."""
        async with self._once_lock:  # concurrent units share one lookup per template
            if name not in self._templates:
                self._templates[name] = await self.inventree.parameter_template(name)
        return self._templates[name]

    async def set_parameters(
        self, part_pk: int, archive: Archive, report: ItemReport, *, created: bool = False
    ) -> None:
        values = {
            WEIGHT_TEMPLATE: archive.filament_used_grams,
            PRINT_TIME_TEMPLATE: archive.print_time_seconds,
        }
        for name, raw in values.items():
            if raw is None:
                continue
            template = await self.template(name)
            if template is None:
                continue
            data = parameter_value(name, float(raw), template.units or "")
            try:
                await self.inventree.upsert_part_parameter(part_pk, template, data, new_part=created)
            except UpstreamValidation as exc:
                if "template" in exc.errors:  # deleted or replaced since it was remembered: read it again
                    self.inventree.forget_parameter_templates()
                    self._templates.clear()
                raise
            report.writes.append(f"parameter:{name}")

    async def set_image(
        self,
        part_pk: int,
        ipn: str,
        archive: Archive,
        report: ItemReport,
        *,
        force: bool,
        has_image: bool | None = None,
    ) -> bool:
        """Upload the thumbnail when the part has none (or OVERWRITE_PART_IMAGES). Returns "part has an image".

        ``has_image`` is what a just-read part said (no need to read it again)."""
        if not self.settings.overwrite_part_images:
            if has_image is None:
                has_image = (await self.inventree.get_part(part_pk)).image is not None
            if has_image:
                return True
        elif not force and (await self.store.get_value(PART_CACHE, ipn) or {}).get("image"):
            return True
        thumbnail = await self.bambuddy.thumbnail(archive.id)
        if thumbnail is None:
            return False
        await page.keep_thumbnail(self.store, ipn, archive.id, thumbnail)
        await self.inventree.upload_part_image(
            part_pk, thumbnail.data, f"{ipn}.{thumbnail.extension}", content_type=thumbnail.content_type
        )
        report.writes.append("image")
        return True

    async def set_link(self, archive: Archive, part_pk: int, report: ItemReport) -> None:
        """Point the archive at its part. Reprints of one archive share it: one PATCH per archive and run."""
        url = await self.inventree.part_web_url(part_pk)
        async with keyed_lock(self._link_locks, archive.id):
            await self._set_link(await self.archive(archive.id), url, report)

    async def _set_link(self, archive: Archive, url: str, report: ItemReport) -> None:
        current = (archive.external_url or "").strip()
        if current == url:
            return
        if (
            current
            and not self.is_inventree_link(current)
            and not self.settings.overwrite_archive_external_link
        ):
            report.writes.append("link:kept-existing")
            return
        updated = await self.bambuddy.set_external_url(archive.id, url)
        self._archives.pop(archive.id, None)
        future = asyncio.get_running_loop().create_future()
        future.set_result(updated)
        self._archives[archive.id] = future
        self._forget_old_archives()
        report.writes.append("link")

    def is_inventree_link(self, url: str) -> bool:
        bases = {self.settings.inventree_browser_url, self.settings.inventree_root_url}
        return any(b and url.startswith(b) for b in bases) or bool(INVENTREE_LINK.search(url))


@contextlib.asynccontextmanager
async def keyed_lock(locks: dict[Hashable, tuple[asyncio.Lock, int]], key: Hashable) -> AsyncIterator[None]:
    """Hold the lock of ``key``; the entry goes once nobody holds or waits for it (a long backfill would
    otherwise keep one lock per part and archive it ever saw)."""
    lock, users = locks.get(key) or (asyncio.Lock(), 0)
    locks[key] = (lock, users + 1)
    try:
        async with lock:
            yield
    finally:
        lock, users = locks[key]
        if users <= 1:
            del locks[key]
        else:
            locks[key] = (lock, users - 1)


def parameter_value(name: str, value: float, units: str) -> str:
    """A plain number in the template's own unit (InvenTree validates units: no text like "1h 2m")."""
    unit = units.strip().lower()
    if name == PRINT_TIME_TEMPLATE:
        factor = {"min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600}
        value = value / factor.get(unit, 1)
    elif name == WEIGHT_TEMPLATE and unit in ("kg", "kilogram", "kilograms"):
        value = value / 1000
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"
