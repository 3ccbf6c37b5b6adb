"""The route table, and the routers of the ``app`` and ``api`` targets.

``app`` serves every route in one service (what ``farmsync serve`` runs on port 8088); ``api`` the manual
routes (``webhook`` and the ticks serve one handler each: farmsync.web.targets). Handlers live in
farmsync.web.handlers (the page's in farmsync.web.actions and farmsync.web.dashboard); each imports its
feature's use cases on first call, so importing this table stays cheap. Query and body models come with the
handlers (farmsync.web.inputs); the OpenAPI description is built from this table (farmsync.web.openapi).
"""

from __future__ import annotations

from farmsync.web import actions, dashboard
from farmsync.web.handlers import filament, gcode, prints, system
from farmsync.web.router import Route, Router
from farmsync.web.targets import authorize

PAGE = "The operator page's form (session + CSRF, or X-Service-Token): "
PAGE_ROUTES = [  # the page checks its own session (farmsync.web.session), so the router lets them through
    Route("POST", "/login", actions.login, "none", PAGE + "sign in with the service token.", body="form"),
    Route("POST", "/logout", actions.logout, "none", PAGE + "sign out.", body="form"),
    Route("POST", "/page/prints/retry", actions.retry, "none", PAGE + "retry a failed print.", body="form"),
    Route(
        "POST",
        "/page/filament/apply",
        actions.apply_filament,
        "none",
        PAGE + "apply the plan shown.",
        body="form",
    ),
    Route(
        "POST",
        "/page/filament/plan",
        actions.filament_plan,
        "none",
        PAGE + "check filament again.",
        body="form",
    ),
    Route(
        "POST",
        "/page/gcode/preview",
        actions.gcode_preview,
        "none",
        PAGE + "preview a G-code sync.",
        body="form",
    ),
    Route(
        "POST",
        "/page/gcode/apply",
        actions.gcode_apply,
        "none",
        PAGE + "apply the previewed sync.",
        body="form",
    ),
    Route("GET", "/page/thumb/{ipn}", actions.thumbnail, "none", "A print's thumbnail kept by farmsync."),
]

ROUTES: list[Route] = [
    Route("GET", "/health", system.health, "none", "Liveness: the process answers and the store opens."),
    Route("GET", "/openapi.json", system.openapi, "none", "This API's OpenAPI description."),
    Route("GET", "/validate", system.validate, "service", "Check connections, ids and templates."),
    Route("GET", "/sync/status", prints.status, "service", "Print sync counts, cursor and failures."),
    Route(
        "POST",
        "/sync/archive/{archive_id:int}",
        prints.sync_archive,
        "service",
        "Sync one archive now; force refreshes parameters, image and link.",
    ),
    Route(
        "POST",
        "/sync/backfill",
        prints.backfill,
        "service",
        "Sync every completed print not yet synced.",
    ),
    Route(
        "POST",
        "/webhooks/bambuddy",
        prints.webhook,
        "webhook",
        "Bambuddy notification (body up to 8 MiB, finish photo included): triggers an incremental tick.",
        body=prints.Notification,
    ),
    Route("GET", "/filament/status", filament.status, "service", "Spool matching, pending usage, loaded."),
    Route(
        "POST",
        "/sync/filament",
        filament.sync_all,
        "service",
        "Usage, then locations, then spools.",
    ),
    Route(
        "POST",
        "/sync/filament/spools",
        filament.sync_spools,
        "service",
        "InvenTree spools to Bambuddy.",
    ),
    Route(
        "POST",
        "/sync/filament/locations",
        filament.sync_locations,
        "service",
        "Move InvenTree spools to the printers Bambuddy assigns them to.",
    ),
    Route(
        "POST",
        "/sync/filament/usage",
        filament.sync_usage,
        "service",
        "Subtract Bambuddy usage from InvenTree, exactly once.",
    ),
    Route("GET", "/gcode/status", gcode.status, "service", "G-code mirror state per printer."),
    Route(
        "POST",
        "/sync/gcode",
        gcode.sync,
        "service",
        "Mirror the master folder onto the printers (or pull printer-only files back).",
    ),
    Route(
        "GET",
        "/",
        dashboard.page,
        "none",
        "The operator's page (HTML; signs in itself).",
    ),
    *PAGE_ROUTES,
    Route(
        "GET",
        "/metrics",
        system.metrics,
        "service",
        "Prometheus metrics of this process (open without a token when METRICS_PUBLIC=true).",
    ),
    Route(
        "POST",
        "/notify/test",
        system.notify_test,
        "service",
        "Send a test notification to NOTIFY_URL now.",
    ),
]

MANUAL_PATHS = {r.path for r in ROUTES if r.auth == "service"} | {"/health", "/openapi.json"}

app_router = Router(ROUTES, authorize)
api_router = Router([r for r in ROUTES if r.path in MANUAL_PATHS], authorize)
