"""The names a person knows things by, gathered from what a filament run read anyway (no extra request).

Reports keep ids (scripts and ``--json`` need them); the CLI turns them into "Prusament PLA Galaxy Black
(batch SPOOL-7)" and "Shelf A → AMS X1C-01" with these maps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from farmsync.clients.inventree_models import StockItem

if TYPE_CHECKING:
    from farmsync.filament.context import FilamentSync


def collect_names(ctx: FilamentSync, items: Mapping[int, StockItem]) -> dict[str, dict[int, str]]:
    """Location, stock item and Bambuddy spool names known to ``ctx`` after its run.

    ``items`` is the run's view of InvenTree's filament items taken *before* the steps ran: a depleted item
    leaves the live view, but its usage line still needs a name.
    """
    locations: dict[int, str] = {}
    for item in items.values():
        detail = item.location_detail
        if item.location is not None and detail is not None and (detail.pathstring or detail.name):
            locations[item.location] = detail.pathstring or detail.name or ""
    for pk, check in ctx._locations.items():
        if check.name:
            locations[pk] = check.name
    parts = {pk: info.name for pk, info in ctx._parts.items() if info.name}
    stock_items: dict[int, str] = {}
    for item in items.values():
        part = item.part_detail
        name = parts.get(item.part) or (part and (part.full_name or part.name)) or f"part {item.part}"
        stock_items[item.pk] = f"{name} (batch {item.batch})" if item.batch else name
    spools: dict[int, str] = {}
    for spool in ctx.spools.values():
        words = [w for w in (spool.brand, spool.material, spool.subtype, spool.color_name) if w]
        spools[spool.id] = " ".join(words) or f"spool {spool.id}"
    return {"locations": locations, "stock_items": stock_items, "spools": spools}
