"""Stable names for what one print produces: the part key and IPN, the batch of each stock item.

These are pure functions because every idempotency guarantee leans on them: the same archive must give the same
IPN on every machine and in every version, and the batch names must match the ones already in InvenTree
(``bambuddy-<archive_id>``, as the older tool wrote them) so that moving over creates no duplicate.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from farmsync.clients.inventree import truncate

if TYPE_CHECKING:
    from farmsync.clients.bambuddy_models import Archive

NAME_MAX = 100
DESCRIPTION_MAX = 250


def part_key(archive: Archive, fields: list[str]) -> str | None:
    """The first non-empty value among ``fields`` of the archive (``name`` falls back to ``print_name``).

    ``fields`` come from PART_KEY_FIELDS, so they are looked up by name."""
    for field in fields:
        value = getattr(archive, field, None)
        if value is None and field == "name":
            value = getattr(archive, "print_name", None)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def part_ipn(key: str, prefix: str) -> str:
    """``<prefix>-<first 12 hex of sha1(key)>``, e.g. ``BMB-0123456789ab`` (the rule IPNs already in InvenTree were made by)."""
    return f"{prefix}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:12]}"  # noqa: S324 - a name, not security


def run_batch(archive_id: int, run_id: int) -> str:
    """Batch of the stock item for one print-log run (SYNC_UNIT=run)."""
    return f"bambuddy-{archive_id}-{run_id}"


def archive_batch(archive_id: int) -> str:
    """Batch of the stock item for a whole archive (SYNC_UNIT=archive, and the batches the older tool wrote)."""
    return f"bambuddy-{archive_id}"


def part_name(archive: Archive) -> str:
    """A readable part name ≤ 100 characters: the print name, else the file name without print suffixes."""
    name = (archive.print_name or "").strip()
    if not name:
        name = (archive.filename or "").strip()
        for suffix in (".gcode.3mf", ".3mf", ".gcode", ".bgcode"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
    return truncate(name or f"Bambuddy archive {archive.id}", NAME_MAX)


def part_description(archive: Archive) -> str:
    """What the part is and where it came from, ≤ 250 characters (InvenTree rejects longer)."""
    bits = [f"Printed part from Bambuddy archive #{archive.id}"]
    if archive.filename:
        bits.append(f"file {archive.filename}")
    if archive.filament_type:
        bits.append(archive.filament_type)
    if archive.designer:
        bits.append(f"by {archive.designer}")
    return truncate(", ".join(bits), DESCRIPTION_MAX)


def stock_notes(archive_id: int, run_id: int | None, printer: str | None) -> str:
    """Notes on the stock item naming the archive and run (kept short: tracking notes are ≤ 512)."""
    where = f" on {printer}" if printer else ""
    run = f", print-log run #{run_id}" if run_id is not None else ""
    return f"Printed{where}: Bambuddy archive #{archive_id}{run} (farmsync)"
