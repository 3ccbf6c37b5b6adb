"""``GET /``: the operator's page, drawn from what the last runs recorded in the store.

Viewing it makes no request to Bambuddy, InvenTree or a printer: prints carry their names and links in their
done records (farmsync.prints.page), filament keeps a snapshot with its plan (farmsync.filament.page), and the
G-code mirror keeps each printer's last result (farmsync.gcode.status). Jinja2 renders it with autoescape; the
buttons are forms (farmsync.web.actions), so the page works without JavaScript.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import defaultdict
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.responses import HTMLResponse, Response

from farmsync import __version__
from farmsync.errors import FarmsyncError
from farmsync.human import parse_time
from farmsync.logs import get_logger
from farmsync.services import Services, get_services
from farmsync.store import State
from farmsync.web import charts, session
from farmsync.web.call import Call

if TYPE_CHECKING:
    from jinja2 import Environment

log = get_logger("web")
PRINTS_SHOWN = 30
PRINTS_READ = 500  # done records read per namespace for the list and the 30-day chart
CHART_DAYS = 30


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The page's templates, autoescaped; Jinja2 loads on the first page view, not with the route table."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("farmsync.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = ago
    env.filters["exact"] = exact
    env.filters["grams"] = lambda v: "" if v is None else f"{float(v):,.0f} g"
    env.filters["size"] = charts.size_text
    env.filters["colour"] = colour
    return env


def exact(value: float | str | None) -> str:
    """Epoch seconds (the store) or ISO 8601 (status JSON) as a UTC time."""
    moment = parse_time(value) if value else None
    if moment is None:
        return "never"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: float | str | None, now: float | None = None) -> str:
    """ "3 min ago", "2 h ago", "5 days ago" (or "never")."""
    moment = parse_time(value) if value else None
    if moment is None:
        return "never"
    seconds = (now or dt.datetime.now(dt.UTC).timestamp()) - moment.timestamp()
    if seconds < 0:
        return "just now" if seconds > -60 else "in the future"
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''} ago"
    return "just now"


def colour(rgba: str | None) -> str | None:
    """``#rrggbb`` from Bambuddy's RRGGBBAA, or None when it is not a colour (never echoed raw into CSS)."""
    value = (rgba or "").lstrip("#")[:6]
    if len(value) == 6 and all(c in "0123456789abcdefABCDEF" for c in value):
        return f"#{value.lower()}"
    return None


def render(name: str, **context: Any) -> str:
    css = resources.files("farmsync.web").joinpath("templates/dashboard.css").read_text(encoding="utf-8")
    return environment().get_template(name).render(css=css, version=__version__, **context)


def html_response(call: Call, text: str, sess: session.Session, nonce: str, status: int = 200) -> Response:
    """The page with a strict policy: scripts only with this view's nonce, every fetch to farmsync itself."""
    policy = (
        "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
        f"script-src 'nonce-{nonce}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    response = HTMLResponse(
        text,
        status_code=status,
        headers={
            "Content-Security-Policy": policy,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
    if sess.changed:
        response.headers["Set-Cookie"] = session.cookie(call, get_services().settings, sess)
    return response


# --- what the sections read (the store only) --------------------------------------------------------------------


async def prints_data(services: Services) -> dict[str, Any]:
    from farmsync.prints.page import INFO_NS
    from farmsync.prints.service import print_status

    store = services.store
    status = await print_status(services)
    done = [
        *await store.list("run", State.DONE, PRINTS_READ),
        *await store.list("archive", State.DONE, PRINTS_READ),
    ]
    rows = []
    for record in done:
        result = record.result or {}
        if result.get("skipped"):
            continue
        rows.append(
            {
                **result,
                "key": f"{record.namespace}:{record.key}",
                "at": result.get("finished_at") or record.updated_at,
            }
        )
    rows.sort(key=lambda r: -(r["at"] or 0))
    failures = []
    for entry in status["pending"] + status["parked"]:
        namespace, _, key = entry["key"].partition(":")
        info = await store.get_value(INFO_NS, entry["key"]) or {}
        archive = info.get("archive") or (int(key) if namespace == "archive" and key.isdigit() else None)
        failures.append(
            {
                **entry,
                "name": info.get("name") or f"print {key}",
                "printer": info.get("printer"),
                "archive": archive,
                "parked": entry in status["parked"],
            }
        )
    counts = status.get("runs") or status.get("archives") or {}
    last = [r for r in (status.get("last_tick"), status.get("last_backfill")) if r]
    return {
        "rows": rows[:PRINTS_SHOWN],
        "all": rows,
        "failures": failures,
        "counts": counts,
        "last_run": max(last, key=lambda r: r.get("at") or 0) if last else None,
    }


async def filament_data(services: Services) -> dict[str, Any] | None:
    from farmsync.filament.page import SNAPSHOT_KEY
    from farmsync.filament.run import META_NS

    snapshot: dict[str, Any] | None = await services.store.get_value(META_NS, SNAPSHOT_KEY)
    return snapshot


async def gcode_data(services: Services) -> dict[str, Any]:
    from farmsync.gcode.service import gcode_status

    return await gcode_status(services)


async def usage_by_day(
    services: Services, snapshot: dict[str, Any] | None
) -> dict[str, dict[dt.date, float]]:
    """Grams subtracted per day and material, from the usage rows' done records (material by batch)."""
    from farmsync.filament.usage import USAGE_NS

    material = {
        s.get("batch"): s.get("material") for s in (snapshot or {}).get("spools", []) if s.get("batch")
    }
    series: dict[str, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
    for record in await services.store.list(USAGE_NS, State.DONE, PRINTS_READ):
        result = record.result or {}
        grams = result.get("charged_grams", result.get("grams"))
        if not isinstance(grams, int | float) or grams <= 0:
            continue
        name = material.get(result.get("batch")) or "unknown material"
        series[str(name)][charts.day_of(record.updated_at)] += float(grams)
    return dict(sorted(series.items()))


async def chart_markup(
    services: Services, prints: dict[str, Any], snapshot: dict[str, Any] | None, gcode: dict[str, Any]
) -> dict[str, str]:
    days = charts.days_back(dt.datetime.now(dt.UTC).date(), CHART_DAYS)
    per_day: dict[dt.date, float] = defaultdict(float)
    for row in prints["all"]:
        if row.get("at"):
            per_day[charts.day_of(row["at"])] += 1
    grams = await usage_by_day(services, snapshot)
    transfers = [
        (
            str(p.get("name")),
            float(p.get("bytes_total") or 0),
            charts.size_text(float(p.get("bytes_total") or 0)) + f", {p.get('files_total') or 0} files",
        )
        for p in gcode.get("printers", [])
    ]
    return {
        "prints": charts.stacked_days("Prints per day", days, {"": per_day}, "prints"),
        "grams": charts.stacked_days("Grams per day by material", days, grams, "g"),
        "gcode": charts.horizontal("G-code transferred per printer", transfers),
    }


async def guarded(name: str, reader: Any, *args: Any) -> tuple[Any, str | None]:
    """One section's data, or the error in words: one broken section must not take the page down."""
    try:
        return await reader(*args), None
    except FarmsyncError as exc:
        return None, str(exc)
    except Exception as exc:
        log.error("page section failed", exc_info=exc, extra={"fields": {"section": name}})
        return None, "This section could not be read; see the logs."


async def page(call: Call) -> Response:
    services = get_services()
    settings = services.settings
    sess = session.load(call, settings)
    nonce = secrets.token_urlsafe(16)
    if not session.allowed(call, settings, sess):
        flash, kind = sess.take_flash()
        text = render("login.html", nonce=nonce, flash=flash, flash_kind=kind)
        return html_response(call, text, sess, nonce)
    prints, prints_error = await guarded("prints", prints_data, services)
    snapshot, filament_error = (None, None)
    if settings.filament_tracking_enabled:
        snapshot, filament_error = await guarded("filament", filament_data, services)
    gcode: dict[str, Any] | None = {"printers": []}
    gcode_error: str | None = None
    if settings.gcode_source_dir is not None:
        gcode, gcode_error = await guarded("gcode", gcode_data, services)
    chart, chart_error = await guarded(
        "charts", chart_markup, services, prints or {"all": []}, snapshot, gcode or {"printers": []}
    )
    flash, kind = sess.take_flash()
    text = render(
        "page.html",
        nonce=nonce,
        csrf=sess.csrf,
        flash=flash,
        flash_kind=kind,
        open_access=not session.token_of(settings),
        signed_in=sess.signed_in,
        store=settings.store_backend.value,
        now=dt.datetime.now(dt.UTC).timestamp(),
        prints=prints,
        prints_error=prints_error,
        filament_on=settings.filament_tracking_enabled,
        filament=snapshot,
        filament_error=filament_error,
        gcode_on=settings.gcode_source_dir is not None,
        gcode=gcode,
        gcode_error=gcode_error,
        preview_printer=sess.preview_printer
        if session.recent(sess.preview_at, PREVIEW_VALID_SECONDS)
        else None,
        charts=chart,
        chart_error=chart_error,
    )
    return html_response(call, text, sess, nonce)


PREVIEW_VALID_SECONDS = 15 * 60
