"""What the operator's page shows of a print, recorded when the print is synced (the page itself reads nothing
upstream): its name, printer and finish time, the part's name and web link, the stock item's link, the Bambuddy
archive's link, and a small thumbnail kept in the store and served by farmsync (never hot-linked).

The thumbnail is kept per part (IPN): the image uploaded to the part is the one the page shows, so it costs no
extra request when farmsync uploads it, and one request per part when the part already had an image.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from farmsync.clients.inventree import stock_web_url
from farmsync.errors import FarmsyncError, StoreError
from farmsync.prints import keys
from farmsync.store import AsyncStore

if TYPE_CHECKING:
    from farmsync.clients.bambuddy import Thumbnail
    from farmsync.clients.bambuddy_models import Archive
    from farmsync.prints.pipeline import PrintSync, Unit

THUMB_NS = "page-thumb"  # IPN -> {"type": content type, "data": base64}
NO_THUMB_NS = "page-thumb-none"  # archive id -> {"none": reason}: no picture the page can keep
INFO_NS = "page-print"  # unit label -> {"name", "printer", "archive"} of a print that failed
THUMB_MAX_BYTES = 16 * 1024
THUMB_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


def archive_web_url(bambuddy_base_url: str, archive_id: int) -> str:
    """Where a person opens the archive in Bambuddy's web UI: the site root (without ``/api/v1``) + archives."""
    root = bambuddy_base_url.rstrip("/")
    for suffix in ("/api/v1", "/api"):
        if root.endswith(suffix):
            root = root[: -len(suffix)]
            break
    return f"{root}/archives/{int(archive_id)}"


async def keep_thumbnail(store: AsyncStore, ipn: str, archive_id: int, thumbnail: Thumbnail) -> bool:
    """Store an archive's thumbnail for the page when it is small and a plain image; True when kept.

    Why "none" is kept per archive and the picture per part: two runs of one part may come from two archives,
    one with a picture and one without, synced at once. A "none" written under the part's key could land after
    the other run's picture and hide it from a page that already links it; under the archive's key it cannot."""
    kind = (thumbnail.content_type or "").split(";", 1)[0].strip().lower()
    if kind not in THUMB_TYPES:
        await store.put_value(NO_THUMB_NS, str(archive_id), {"none": f"not a plain image ({kind[:40]})"})
        return False
    if len(thumbnail.data) > THUMB_MAX_BYTES:
        await store.put_value(NO_THUMB_NS, str(archive_id), {"none": f"larger than {THUMB_MAX_BYTES} bytes"})
        return False
    data = base64.b64encode(thumbnail.data).decode("ascii")
    await store.put_value(THUMB_NS, ipn, {"type": kind, "data": data})
    return True


async def thumbnail_for(sync: PrintSync, ipn: str, archive_id: int) -> bool:
    """Whether the page has a thumbnail for this part, reading the archive's once when none was kept yet."""
    kept = await sync.store.get_value(THUMB_NS, ipn)
    if kept is not None and "data" in kept:
        return True
    if await sync.store.get_value(NO_THUMB_NS, str(archive_id)) is not None:
        return False
    try:
        thumbnail = await sync.bambuddy.thumbnail(archive_id)
    except (FarmsyncError, OSError):  # a picture is not worth failing a print's stock over: try next time
        return False
    if thumbnail is None:
        await sync.store.put_value(NO_THUMB_NS, str(archive_id), {"none": "the archive has no thumbnail"})
        return False
    return await keep_thumbnail(sync.store, ipn, archive_id, thumbnail)


async def page_fields(
    sync: PrintSync, unit: Unit, archive: Archive, part_pk: int, ipn: str, stock_item: int | None
) -> dict[str, Any]:
    """The fields a synced print's record carries for the page (a few short strings and numbers)."""
    inventree = sync.inventree
    api = await inventree.api_version()  # read once per process; the back-link needs it too
    finished = unit.finished_at or (archive.completed_at.timestamp() if archive.completed_at else None)
    return {
        "name": unit.name or archive.print_name or keys.part_name(archive),
        "printer": unit.printer,
        "finished_at": finished,
        "part_name": keys.part_name(archive),
        "part_url": await inventree.part_web_url(part_pk),
        "stock_url": stock_web_url(inventree.web_base, stock_item, api) if stock_item else None,
        "archive_url": archive_web_url(sync.settings.bambuddy_base_url, archive.id),
        "grams": archive.filament_used_grams,
        "thumb": ipn if await thumbnail_for(sync, ipn, archive.id) else None,
    }


async def remember_failure(store: AsyncStore, unit: Unit) -> None:
    """A failed print's name and printer, so the page can say which print failed without asking Bambuddy."""
    try:
        await store.put_value(
            INFO_NS, unit.label, {"name": unit.name, "printer": unit.printer, "archive": unit.archive_id}
        )
    except StoreError:  # the failure itself is recorded; only the page's label for it is missing
        return
