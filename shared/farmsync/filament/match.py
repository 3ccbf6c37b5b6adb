"""Spool identity: which InvenTree stock item and which Bambuddy spool are the same physical spool.

The InvenTree batch is the spool key. A Bambuddy spool carries it in FILAMENT_BATCH_SOURCE (``tag_uid`` by
default); the other tag field is accepted as an alias, because a Bambu roll has two RFID chips (one per side)
that share one ``tray_uuid``, so either field may be the one that holds the batch.

Comparison rules (:func:`tag_key`):

- A value made only of hex digits and separators (space ``:`` ``-`` ``_`` ``.``) is compared the way Bambuddy
  compares tags: separators dropped, upper-cased, the last 16 digits for ``tag_uid`` (its column is 16 wide) and
  the first 32 for ``tray_uuid``. So ``04:a1:b2`` equals ``04A1B2``.
- Any other value (``INV-BATCH-0001``) is compared as text: surrounding space dropped, case-insensitive, exact.
  Bambuddy would keep only the stray hex digits of such a value (``BAC0001``), which could make two unrelated
  batches equal; exact text equality cannot. A hex value never equals a text value.
- Empty and all-zero tags (an AMS slot without RFID reports zeros) never match anything.

Several items for one key, several spools for one item, or one spool for several items is a conflict: it is
reported and nothing is written for it. Archived Bambuddy spools count only when no active spool carries the key
(a re-spooled roll reuses its tag; the archived one is history).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from farmsync.clients.bambuddy_models import Spool
from farmsync.clients.inventree_models import StockItem

TagField = Literal["tag_uid", "tray_uuid"]
TAG_FIELDS: tuple[TagField, TagField] = ("tag_uid", "tray_uuid")
_SEPARATORS = re.compile(r"[\s:\-_.]+")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


@dataclass(frozen=True, order=True)
class TagKey:
    """A normalised tag or batch: ``hex`` digits (upper-case) or case-folded ``text``."""

    kind: Literal["hex", "text"]
    value: str

    def __str__(self) -> str:
        return self.value if self.kind == "hex" else f"text:{self.value}"


def tag_key(raw: str | None, field: TagField) -> TagKey | None:
    """The comparable form of a tag or batch as ``field`` stores it; None when it can never match."""
    text = (raw or "").strip()
    if not text:
        return None
    compact = _SEPARATORS.sub("", text)
    if compact and _HEX.match(compact):
        digits = compact.upper()
        digits = digits[-16:] if field == "tag_uid" else digits[:32]
        if set(digits) == {"0"}:
            return None
        return TagKey("hex", digits)
    return TagKey("text", text.casefold())


def tag_value(batch: str, field: TagField) -> str:
    """What to store in Bambuddy's ``field`` for ``batch``: the normalised hex (so Bambuddy's own RFID lookup
    finds it), or the batch text unchanged."""
    key = tag_key(batch, field)
    return key.value if key is not None and key.kind == "hex" else batch.strip()


def other_field(field: TagField) -> TagField:
    return "tray_uuid" if field == "tag_uid" else "tag_uid"


def spool_keys(spool: Spool) -> set[tuple[TagField, TagKey]]:
    """Every (field, key) a Bambuddy spool can be found by."""
    keys: set[tuple[TagField, TagKey]] = set()
    for name in TAG_FIELDS:
        key = tag_key(getattr(spool, name), name)
        if key is not None:
            keys.add((name, key))
    return keys


def batch_keys(batch: str | None, source: TagField) -> set[tuple[TagField, TagKey]]:
    """The (field, key) pairs that find the spool of ``batch``: the source field first, the other as alias."""
    keys: set[tuple[TagField, TagKey]] = set()
    for name in (source, other_field(source)):
        key = tag_key(batch, name)
        if key is not None:
            keys.add((name, key))
    return keys


class Conflict(BaseModel):
    """Something that cannot be matched without guessing; nothing is written for the items and spools named."""

    kind: Literal["stock_items", "spools", "spool_batches"]
    key: str
    batches: list[str] = Field(default_factory=list)
    stock_items: list[int] = Field(default_factory=list)
    spools: list[int] = Field(default_factory=list)
    detail: str


@dataclass(frozen=True)
class Match:
    """One InvenTree spool and its one Bambuddy spool."""

    key: TagKey
    batch: str
    item: int
    spool: int


@dataclass
class FilamentIndex:
    """The result of matching both sides once; steps and the status page read it."""

    source: TagField
    matches: list[Match] = field(default_factory=list)
    by_spool: dict[int, Match] = field(default_factory=dict)
    by_item: dict[int, Match] = field(default_factory=dict)
    missing_in_bambuddy: list[tuple[TagKey, int]] = field(default_factory=list)  # (key, stock item pk)
    missing_in_inventree: list[int] = field(default_factory=list)  # spool ids
    untagged_spools: list[int] = field(default_factory=list)
    unidentified_items: list[int] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    conflicted_items: dict[int, Conflict] = field(default_factory=dict)
    conflicted_spools: dict[int, Conflict] = field(default_factory=dict)
    shadowed: dict[int, int] = field(default_factory=dict)  # archived spool -> active spool with its key


def build_index(items: Iterable[StockItem], spools: Iterable[Spool], source: TagField) -> FilamentIndex:
    """Match InvenTree stock items (by batch) to Bambuddy spools (by tag fields); see the module rules."""
    index = FilamentIndex(source=source)
    groups: dict[TagKey, list[StockItem]] = {}
    for item in sorted(items, key=lambda i: i.pk):
        key = tag_key(item.batch, source)
        if key is None:
            index.unidentified_items.append(item.pk)
            continue
        groups.setdefault(key, []).append(item)

    by_lookup: dict[tuple[TagField, TagKey], list[Spool]] = {}
    all_spools = sorted(spools, key=lambda s: s.id)
    for spool in all_spools:
        keys = spool_keys(spool)
        if not keys and not spool.is_archived:
            index.untagged_spools.append(spool.id)
        for pair in keys:
            by_lookup.setdefault(pair, []).append(spool)

    candidates: dict[TagKey, list[Spool]] = {}
    groups_of_spool: dict[int, list[TagKey]] = {}
    for key, members in groups.items():
        found: dict[int, Spool] = {}
        for item in members:
            for pair in batch_keys(item.batch, source):
                for spool in by_lookup.get(pair, []):
                    found[spool.id] = spool
        candidates[key] = [found[i] for i in sorted(found)]
        for spool_id in found:
            groups_of_spool.setdefault(spool_id, []).append(key)

    def conflict(c: Conflict, keys: Iterable[TagKey], spool_ids: Iterable[int]) -> None:
        index.conflicts.append(c)
        for key in keys:
            for item in groups.get(key, []):
                index.conflicted_items.setdefault(item.pk, c)
        for spool_id in spool_ids:
            index.conflicted_spools.setdefault(spool_id, c)

    blocked: set[TagKey] = set()
    for spool_id, shared_keys in sorted(groups_of_spool.items()):
        if len(shared_keys) > 1:
            items_of = [i.pk for k in shared_keys for i in groups[k]]
            c = Conflict(
                kind="spool_batches",
                key=", ".join(str(k) for k in shared_keys),
                batches=sorted({i.batch or "" for k in shared_keys for i in groups[k]}),
                stock_items=items_of,
                spools=[spool_id],
                detail=f"Bambuddy spool {spool_id} matches {len(shared_keys)} different InvenTree batches",
            )
            conflict(c, shared_keys, [spool_id])
            blocked.update(shared_keys)

    for key, members in sorted(groups.items()):
        spools_here = candidates[key]
        active = [s for s in spools_here if not s.is_archived]
        archived = [s for s in spools_here if s.is_archived]
        batches = sorted({m.batch or "" for m in members})
        if len(members) > 1:
            c = Conflict(
                kind="stock_items",
                key=str(key),
                batches=batches,
                stock_items=[m.pk for m in members],
                spools=[s.id for s in spools_here],
                detail=f"{len(members)} InvenTree stock items share batch {batches[0]!r}",
            )
            conflict(c, [key], [s.id for s in spools_here])
            continue
        if key in blocked:
            continue
        chosen = active if active else archived
        if len(chosen) > 1:
            state = "active" if active else "archived"
            c = Conflict(
                kind="spools",
                key=str(key),
                batches=batches,
                stock_items=[members[0].pk],
                spools=[s.id for s in chosen],
                detail=f"{len(chosen)} {state} Bambuddy spools carry batch {batches[0]!r}",
            )
            conflict(c, [key], [s.id for s in chosen])
            continue
        if not chosen:
            index.missing_in_bambuddy.append((key, members[0].pk))
            continue
        match = Match(key=key, batch=members[0].batch or "", item=members[0].pk, spool=chosen[0].id)
        index.matches.append(match)
        index.by_spool[match.spool] = match
        index.by_item[match.item] = match
        for spool in archived if active else []:
            index.shadowed[spool.id] = match.spool

    for spool in all_spools:
        if spool.is_archived or spool.id in groups_of_spool or spool.id in index.untagged_spools:
            continue
        index.missing_in_inventree.append(spool.id)
    return index
