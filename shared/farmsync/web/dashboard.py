"""``GET /``: a small server-rendered page of what farmsync is doing. No front-end build, no script.

Each section reads the same functions as the JSON routes and shows "not configured" instead of failing when its
feature is off, so the page works on any deployment. Every value is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from importlib import resources
from typing import Any

from starlette.responses import HTMLResponse

from farmsync import __version__
from farmsync.errors import FarmsyncError
from farmsync.human import parse_time
from farmsync.logs import get_logger
from farmsync.services import Services, get_services
from farmsync.web.call import Call
from farmsync.web.router import jsonable

log = get_logger("web")


EPOCH = dt.datetime.fromtimestamp(0, dt.UTC)


def when(value: float | str | None) -> str:
    """Epoch seconds or ISO 8601 (the status JSON's times) as a UTC time."""
    moment = parse_time(value) if value else None
    if moment is None:
        return "never"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    """Cells are already-escaped HTML fragments; headers are plain text."""
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def badge(text: str, kind: str) -> str:
    return f'<span class="badge {escape(kind)}">{escape(text)}</span>'


async def prints_section(services: Services) -> str:
    from farmsync.prints.routes import print_status

    status = await print_status(services)
    counts = status.get("runs") or status.get("archives") or {}
    runs = [r for r in (status.get("last_tick"), status.get("last_backfill")) if r]
    last = max(runs, key=lambda r: parse_time(r.get("at")) or EPOCH) if runs else {}
    cards = [
        ("synced", str(counts.get("done", 0))),
        ("pending retry", str(counts.get("failed", 0))),
        ("parked", str(counts.get("parked", 0))),
        (
            "cursor",
            escape(
                ", ".join(f"{k} {v.get('time') or v.get('id')}" for k, v in status["cursor"].items())
                or "none"
            ),
        ),
        ("last run", escape(when(last.get("at")))),
    ]
    card_html = "".join(
        f'<div class="card"><div class="n">{v}</div><div>{escape(k)}</div></div>' for k, v in cards
    )
    recent = [
        [
            escape(r["key"]),
            escape(str(r.get("archive") or "")),
            escape(str(r.get("part") or "")),
            escape(str(r.get("stock_item") or r.get("skipped") or "")),
            escape(when(r.get("at"))),
        ]
        for r in status["recent"]
    ]
    failures = [
        [
            escape(f["key"]),
            str(f["attempts"]),
            escape(f.get("error") or ""),
            badge("parked", "bad") if f in status["parked"] else badge("retrying", "warn"),
        ]
        for f in status["pending"] + status["parked"]
    ]
    return (
        f'<div class="cards">{card_html}</div><h3>Recent prints</h3>'
        + table(["unit", "archive", "part", "stock item", "when"], recent, "No prints synced yet.")
        + "<h3>Failures and parked prints</h3>"
        + table(["unit", "attempts", "last error", "state"], failures, "No failures.")
    )


def swatch(rgba: str | None) -> str:
    colour = (rgba or "").lstrip("#")[:6]
    if len(colour) != 6 or any(c not in "0123456789abcdefABCDEF" for c in colour):
        return '<span class="swatch none"></span>'
    return f'<span class="swatch" style="background:#{colour}"></span>'


def grams_bar(left: float | None, label: float | None) -> str:
    if left is None:
        return ""
    full = label or 1000.0
    pct = max(0.0, min(100.0, 100.0 * left / full))
    return (
        f'<div class="bar"><div style="width:{pct:.0f}%"></div></div><span class="grams">{left:.0f} g</span>'
    )


def spool_name(view: dict[str, Any]) -> str:
    """A spool as people know it: material and colour, with its tag to tell two alike apart."""
    words = " ".join(str(view[k]) for k in ("material", "color_name") if view.get(k)) or "spool"
    tag = view.get("tag_uid") or view.get("tray_uuid")
    return f"{words} ({tag})" if tag else words


async def filament_section(services: Services) -> str:
    if not services.settings.filament_tracking_enabled:
        return '<p class="empty">Filament tracking is off (FILAMENT_TRACKING_ENABLED=false).</p>'
    from farmsync.filament.status import filament_status

    status = jsonable(await filament_status(services))
    rows = []
    for slot in sorted(status.get("loaded", []), key=lambda s: (str(s.get("printer")), str(s.get("slot")))):
        spool = (
            swatch(slot.get("rgba"))
            + " "
            + escape(" ".join(str(v) for v in (slot.get("material"), slot.get("color_name")) if v))
        )
        rows.append(
            [
                escape(str(slot.get("printer") or slot.get("printer_id"))),
                escape(str(slot.get("slot", ""))),
                spool,
                escape(str(slot.get("batch") or "unmatched")),
                grams_bar(slot.get("grams_left"), slot.get("label_weight")),
            ]
        )
    summary = (
        f"{len(status.get('matched', []))} matched, "
        f"{len(status.get('missing_in_bambuddy', []))} missing in Bambuddy, "
        f"{len(status.get('missing_in_inventree', []))} missing in InvenTree, "
        f"{len(status.get('depleted', []))} depleted, "
        f"{len(status.get('conflicts', []))} conflicts, {len(status.get('pending_usage', []))} usage rows pending"
    )
    notes = [summary]
    if status.get("depleted"):
        names = (spool_name(v) for v in status["depleted"])
        notes.append("Depleted (used up in InvenTree): " + ", ".join(names))
    if status.get("usage_left_out_note"):
        notes.append(str(status["usage_left_out_note"]))
    return "".join(f"<p>{escape(n)}</p>" for n in notes) + table(
        ["printer", "slot", "spool", "batch", "left"], rows, "No spools are loaded."
    )


async def gcode_section(services: Services) -> str:
    if services.settings.gcode_source_dir is None:
        return '<p class="empty">G-code mirror is not configured (GCODE_SOURCE_DIR).</p>'
    from farmsync.gcode.routes import gcode_status

    status = jsonable(await gcode_status(services))
    rows = []
    kinds = {"synced": "ok", "dry_run": "warn", "deferred": "warn", "failed": "bad"}
    labels = {"dry_run": "dry run", "deferred": "busy: deferred"}
    for printer in status.get("printers", []):
        state = str(printer.get("status", ""))
        rows.append(
            [
                escape(str(printer.get("name", ""))),
                escape(str(printer.get("kind", ""))),
                badge(labels.get(state, state), kinds.get(state, "warn")),
                escape(str(printer.get("summary", ""))),
                escape(when(printer.get("at"))),
                escape(str(printer.get("error") or "")),
            ]
        )
    return table(["printer", "kind", "state", "actions", "when", "error"], rows, "No G-code run yet.")


async def section(title: str, builder: Any, services: Services) -> str:
    try:
        body = await builder(services)
    except FarmsyncError as exc:
        body = f'<p class="error">{escape(str(exc))}</p>'
    except Exception as exc:  # one broken section must not take the page down
        log.error("dashboard section failed", exc_info=exc)
        body = '<p class="error">This section could not be rendered; see the logs.</p>'
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


async def page(call: Call) -> HTMLResponse:
    services = get_services()
    sections = [
        await section("Prints → InvenTree", prints_section, services),
        await section("Filament", filament_section, services),
        await section("G-code on printers", gcode_section, services),
    ]
    css = resources.files("farmsync.web").joinpath("templates/dashboard.css").read_text(encoding="utf-8")
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>farmsync</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="30"><link rel="icon" href="data:,">'
        f"<style>{css}</style></head><body>"
        f"<header><h1>farmsync</h1><span>v{escape(__version__)} · store "
        f"{escape(services.settings.store_backend.value)} · {escape(when(dt.datetime.now(dt.UTC).timestamp()))}"
        f"</span></header><main>{''.join(sections)}</main></body></html>"
    )
    return HTMLResponse(html)
