"""The operator page's buttons: sign in and out, retry a print, apply the filament plan, sync G-code.

Each is a form POST checked by farmsync.web.session (signed-in session + CSRF token, or ``X-Service-Token``),
then does exactly what the JSON routes do, and answers 303 back to the page with one line saying what happened
(post/redirect/get, so a reload never presses the button again). The thumbnail route serves the small images
the print sync kept in the store.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse, RedirectResponse, Response

from farmsync.errors import AuthRequired, FarmsyncError, InputError
from farmsync.logs import action, get_logger
from farmsync.services import Services, get_services
from farmsync.web import session
from farmsync.web.call import Call, bounded_integer
from farmsync.web.router import PATH_INT_MAX, PATH_INT_MIN

log = get_logger("web")
Press = Callable[[Services, dict[str, str], session.Session], Awaitable[str]]


def back(call: Call, services: Services, sess: session.Session | None, anchor: str = "") -> Response:
    response = RedirectResponse(f"/{anchor}", status_code=303)
    response.headers["Set-Cookie"] = session.cookie(call, services.settings, sess)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    return response


async def login(call: Call) -> Response:
    services = get_services()
    sess = session.load(call, services.settings)
    fields = await session.form(call)
    if not session.sign_in(services.settings, sess, fields.get("token")):
        action(log, "page sign-in refused", 30)
        sess.say("That is not the service token.", "bad")
    return back(call, services, sess)


async def logout(call: Call) -> Response:
    services = get_services()
    sess = session.load(call, services.settings)
    session.require_action(call, services.settings, sess, await session.form(call))
    return back(call, services, None)


async def press(call: Call, anchor: str, work: Press) -> Response:
    """Check the caller, run the button's work and say what happened; a farmsync error becomes the message."""
    services = get_services()
    sess = session.load(call, services.settings)
    fields = await session.form(call)
    session.require_action(call, services.settings, sess, fields)
    try:
        sess.say(await work(services, fields, sess))
    except InputError as exc:
        if exc.status_code != 409:
            raise  # the caller sent something wrong: a 4xx naming the field
        sess.say(str(exc), "bad")  # the state changed under the page (a new plan, no preview): say so
    except FarmsyncError as exc:
        sess.say(str(exc), "bad")
    return back(call, services, sess, anchor)


def archive_field(fields: dict[str, str]) -> int:
    """The form's archive id: ASCII digits within the bounds of a path id (``isdigit`` takes full-width ones)."""
    return bounded_integer(
        fields.get("archive", ""), "archive", PATH_INT_MIN, PATH_INT_MAX, where="form field"
    )


async def _retry(services: Services, fields: dict[str, str], sess: session.Session) -> str:
    from farmsync.prints.service import sync_archive

    archive_id = archive_field(fields)
    report = await sync_archive(services, archive_id)
    names = sorted({item.name or item.key for item in report.items})
    totals = report.as_dict().get("totals", {})
    words = ", ".join(f"{n} {k}" for k, n in totals.items() if n) or "nothing to do"
    return f"Retried {', '.join(names) or 'the print'}: {words}."


async def retry(call: Call) -> Response:
    return await press(call, "#prints", _retry)


async def _apply(services: Services, fields: dict[str, str], sess: session.Session) -> str:
    from farmsync.filament.page import apply_plan
    from farmsync.filament.run import ensure_enabled

    ensure_enabled(services.settings)
    report = await apply_plan(services, fields.get("digest", ""))
    state = "done" if report.ok else "done with problems"
    errors = "; ".join(report.errors)
    return f"Filament plan applied ({len(report.writes)} writes), {state}." + (f" {errors}" if errors else "")


async def apply_filament(call: Call) -> Response:
    return await press(call, "#filament", _apply)


async def _plan(services: Services, fields: dict[str, str], sess: session.Session) -> str:
    from farmsync.filament.page import record_snapshot
    from farmsync.filament.run import ensure_enabled

    ensure_enabled(services.settings)
    snapshot = await record_snapshot(services)
    return f"Filament checked again: the plan has {snapshot['plan']['count']} writes."


async def filament_plan(call: Call) -> Response:
    return await press(call, "#filament", _plan)


def gcode_words(report: Any) -> str:
    from farmsync.gcode.status import summary

    return "; ".join(f"{p.name}: {summary(p, dry_run=report.dry_run)[0]}" for p in report.printers)


def printer_field(fields: dict[str, str]) -> str:
    name = fields.get("printer", "").strip()
    if not name or len(name) > 200:
        raise InputError(
            "form field 'printer' must name a printer", field="printer", expected="a printer's name"
        )
    return name


async def _preview(services: Services, fields: dict[str, str], sess: session.Session) -> str:
    from farmsync.gcode.service import run_gcode

    name = printer_field(fields)
    report = await run_gcode(services, dry_run=True, pull=False, trigger="page-preview", only=name)
    sess.preview_at, sess.preview_printer = time.time(), name
    return "G-code preview: " + (gcode_words(report) or "no printers")


async def gcode_preview(call: Call) -> Response:
    return await press(call, "#gcode", _preview)


async def _gcode_apply(services: Services, fields: dict[str, str], sess: session.Session) -> str:
    from farmsync.gcode.service import run_gcode
    from farmsync.web.dashboard import PREVIEW_VALID_SECONDS

    name = printer_field(fields)
    if not session.recent(sess.preview_at, PREVIEW_VALID_SECONDS) or sess.preview_printer != name:
        raise InputError(
            f"preview the G-code sync of {name} first (a preview is valid for 15 minutes)",
            field="preview",
            expected="a preview of this printer made from this page",
            status_code=409,
        )
    report = await run_gcode(services, dry_run=False, pull=False, trigger="page", only=name)
    sess.preview_at = sess.preview_printer = None
    return "G-code synced: " + (gcode_words(report) or "no printers")


async def gcode_apply(call: Call) -> Response:
    return await press(call, "#gcode", _gcode_apply)


async def thumbnail(call: Call) -> Response:
    """A print's thumbnail from the store (kept small when the print was synced); never fetched from Bambuddy."""
    from farmsync.prints.page import THUMB_NS

    services = get_services()
    sess = session.load(call, services.settings)
    if not session.allowed(call, services.settings, sess):
        raise AuthRequired("sign in first", field="X-Service-Token", expected="the SERVICE_API_TOKEN value")
    ipn = str(call.path_params["ipn"])[:200]
    kept = await services.store.get_value(THUMB_NS, ipn) or {}
    try:
        data = base64.b64decode(kept.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        return JSONResponse({"error": "farmsync keeps no thumbnail for this part", "status": 404}, 404)
    return Response(
        data,
        media_type=str(kept.get("type") or "image/png"),
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
