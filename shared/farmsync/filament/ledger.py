"""InvenTree's stock history as the ledger of usage already subtracted; the store only caches it.

Every removal farmsync makes carries the notes marker ``bambuddy:usage:<id>:``, and InvenTree keeps that note
on the tracking row. So whether a usage row was charged is a fact InvenTree holds, whatever became of the store
(a new box, a lost volume, a move to Firestore, a new collection prefix). Before the first write for a row the
store has not seen done, the usage step looks here.

Cost is bounded per run, not per row: the usage markers of one *scope* are read once, the first time a row of
it needs them, and kept for the rest of the run. The scope is the item's part on API ≥ 450 (history survives a
deleted item there, with ``item`` null, and can be narrowed with ``min_date``), else the item itself (below 450
a depleted item's history is deleted with it). A spool with no stock item left costs one search for its oldest
unsettled row's marker (no filter: the item is gone), then, on API ≥ 450, one read of that part.

What the ledger cannot know: a history a person deleted or InvenTree pruned
(``STOCK_TRACKING_DELETE_OLD_ENTRIES``); on API < 450, anything about an item InvenTree deleted when it ran out;
and on 450–518 the final removal that emptied an item (its earlier rows survive, so the spool is still known to
be depleted).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from farmsync.clients.inventree import InvenTreeClient
from farmsync.clients.inventree_models import TRACKING_BY_PART_API, StockTrackingEntry
from farmsync.errors import UpstreamNotFound

MARKER_PREFIX = "bambuddy:usage:"
_MARKER = re.compile(r"^bambuddy:usage:(\d+):$")
SINCE_MARGIN = timedelta(days=7)
"""How far before the oldest unsettled row's time a part's history is read: a removal is always made after
its usage row exists, so this is slack for Bambuddy's clock running ahead of InvenTree's (or a naive local
time read as UTC)."""
PAGE = 500
"""Rows per history page: a part's recent usage markers in one or two requests."""


def marker(usage_id: int) -> str:
    """The notes of the removal for one usage row: unique, delimited, compared exactly."""
    return f"{MARKER_PREFIX}{int(usage_id)}:"


def usage_id_of(notes: str | None) -> int | None:
    """The usage row a tracking note marks, or None (``bambuddy:usage:4:`` is never read as 42)."""
    found = _MARKER.match((notes or "").strip())
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Charge:
    """One removal InvenTree's history holds for a usage row."""

    usage_id: int
    item: int | None  # None: InvenTree deleted the item since (API ≥ 450 keeps the row)
    part: int | None
    removed: float | None  # stock units, as InvenTree clamped them
    left: float | None  # stock units left after the removal

    @property
    def emptied(self) -> bool:
        """This removal left nothing."""
        return self.left is not None and self.left <= 0

    @property
    def depleted(self) -> bool:
        """The item ran out: this removal emptied it, or InvenTree has deleted it since."""
        return self.item is None or self.emptied

    def ran_out_text(self) -> str:
        if self.emptied:
            return f"usage {self.usage_id} emptied it"
        return f"InvenTree deleted its item after usage {self.usage_id}"

    @classmethod
    def of(cls, entry: StockTrackingEntry) -> Charge | None:
        usage_id = usage_id_of(entry.notes)
        if usage_id is None:
            return None
        deltas = entry.deltas or {}
        return cls(
            usage_id, entry.item, entry.part, _number(deltas.get("removed")), _number(deltas.get("quantity"))
        )


@dataclass
class Ledger:
    """The usage markers found in InvenTree during one run (``found``), and which scopes were read."""

    inventree: InvenTreeClient
    since: date | None = None
    found: dict[int, Charge] = field(default_factory=dict)
    reads: int = 0
    _read: set[tuple[str, int]] = field(default_factory=set)
    ran_out: dict[int, Charge] = field(default_factory=dict)  # spool id -> a removal that emptied its item
    _probed: dict[int, Charge | None] = field(default_factory=dict)  # spool id -> what its probe found
    _locks: dict[object, asyncio.Lock] = field(default_factory=dict)

    @classmethod
    def for_rows(cls, inventree: InvenTreeClient, times: list[datetime | None]) -> Ledger:
        """A ledger for a run over rows created at ``times`` (their oldest bounds the history read on 450+)."""
        known = [t for t in times if t is not None]
        since = (min(known) - SINCE_MARGIN).date() if known and len(known) == len(times) else None
        return cls(inventree, since)

    def charge(self, usage_id: int) -> Charge | None:
        return self.found.get(int(usage_id))

    async def read_item(self, item: int, part: int | None) -> None:
        """Read the markers of ``item``'s scope (its part on API ≥ 450) unless this run already did."""
        if part is not None and await self._by_part():
            await self._read_scope("part", part)
        else:
            await self._read_scope("item", item)

    async def probe(self, spool_id: int, usage_id: int) -> Charge | None:
        """For a spool with no stock item left: look for one row's marker anywhere (once per spool per run);
        when found on API ≥ 450, read that part's markers too, so the spool's other rows are settled here."""
        async with self._lock(("spool", spool_id)):
            if spool_id not in self._probed:
                self.reads += 1
                rows = await self.inventree.search_tracking(marker(usage_id))
                hit = next((c for c in map(Charge.of, rows) if c and c.usage_id == usage_id), None)
                self._probed[spool_id] = hit
                if hit is not None:
                    self.found.setdefault(hit.usage_id, hit)
                    if hit.part is not None and await self._by_part():
                        await self._read_scope("part", hit.part)
            return self._probed[spool_id]

    def lookup(self, spool_id: int, usage_id: int) -> Charge | None:
        """The removal found for ``usage_id``, if any; one that emptied the item marks the spool as run out."""
        hit = self.found.get(int(usage_id))
        if hit is not None and hit.emptied:
            self.ran_out[spool_id] = hit  # the removal that emptied it says most
        elif hit is not None and hit.depleted:
            self.ran_out.setdefault(spool_id, hit)
        return hit

    async def _by_part(self) -> bool:
        return (await self.inventree.api_version() or 0) >= TRACKING_BY_PART_API

    async def _read_scope(self, kind: str, pk: int) -> None:
        key = (kind, int(pk))
        async with self._lock(key):
            if key in self._read:
                return
            self.reads += 1
            try:
                if kind == "part":
                    rows = await self.inventree.search_tracking(
                        MARKER_PREFIX, part=pk, min_date=self.since, page_size=PAGE
                    )
                else:
                    rows = await self.inventree.search_tracking(MARKER_PREFIX, item=pk, page_size=PAGE)
            except UpstreamNotFound:
                rows = []  # deleted since the run began: the charge that follows finds it gone and retries
            for charge in map(Charge.of, rows):
                if charge is not None:
                    self.found.setdefault(charge.usage_id, charge)
            self._read.add(key)

    def _lock(self, key: object) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
