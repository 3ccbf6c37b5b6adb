"""The route table and the routers each function target serves.

``app`` serves every route (the predecessor's single service on port 8088); ``api`` the manual routes;
``webhook`` and the ticks answer on any path, because a deployed function's URL is the function itself.
Handlers live with their feature (``farmsync.prints.routes`` ...) and are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from farmsync.services import get_services
from farmsync.web.auth import require_service_token, require_webhook_secret
from farmsync.web.call import Call
from farmsync.web.router import Auth, Param, Route, Router


def lazy(target: str) -> Callable[[Call], Awaitable[Any]]:
    """A handler that imports ``module:function`` on first call (keeps cold start small)."""
    module_name, name = target.split(":")

    async def handler(call: Call) -> Any:
        function = getattr(importlib.import_module(module_name), name)
        return await function(call)

    handler.__name__ = name
    handler.__qualname__ = target
    return handler


OPENED_BY_SETTING = {"/metrics": "metrics_public"}
"""Service routes a setting may open to anyone (a Prometheus scraper on a trusted network)."""


async def authorize(route: Route, call: Call) -> None:
    if route.auth == "none":
        return
    settings = get_services().settings
    opener = OPENED_BY_SETTING.get(route.path)
    if opener and getattr(settings, opener):
        return
    if route.auth == "webhook":
        require_webhook_secret(call.headers, call.query, settings.webhook_shared_secret.get_secret_value())
    else:
        require_service_token(call.headers, settings.service_api_token.get_secret_value())


DRY_RUN = (Param("dry_run", "boolean", "Plan only: report the writes without making them."),)

P = "farmsync.prints.routes"
F = "farmsync.filament.routes"
G = "farmsync.gcode.routes"
W = "farmsync.web.routes"

FORCE = Param("force", "boolean", "Refresh parameters, image and link of an already synced print.")
MAX_ARCHIVES = Param("max_archives", "integer", "Stop after this many prints were synced.", 1, 1_000_000)
BUDGET = Param("budget_seconds", "integer", "Stop starting new prints after this many seconds.", 1, 86_400)
RETRY = Param("retry", "string", "now: retry prints waiting after a failure without waiting.")
SECRET = Param("secret", "string", "The webhook secret, for callers that cannot send it as a header.")

A = "farmsync.web.actions"
PAGE = "The operator page's form (session + CSRF, or X-Service-Token): "
PAGE_ROUTES = [  # the page checks its own session (farmsync.web.session), so the router lets them through
    Route(
        "POST", "/login", lazy(f"{A}:login"), "none", PAGE + "sign in with the service token.", body="form"
    ),
    Route("POST", "/logout", lazy(f"{A}:logout"), "none", PAGE + "sign out.", body="form"),
    Route(
        "POST", "/page/prints/retry", lazy(f"{A}:retry"), "none", PAGE + "retry a failed print.", body="form"
    ),
    Route(
        "POST",
        "/page/filament/apply",
        lazy(f"{A}:apply_filament"),
        "none",
        PAGE + "apply the plan shown.",
        body="form",
    ),
    Route(
        "POST",
        "/page/filament/plan",
        lazy(f"{A}:filament_plan"),
        "none",
        PAGE + "check filament again.",
        body="form",
    ),
    Route(
        "POST",
        "/page/gcode/preview",
        lazy(f"{A}:gcode_preview"),
        "none",
        PAGE + "preview a G-code sync.",
        body="form",
    ),
    Route(
        "POST",
        "/page/gcode/apply",
        lazy(f"{A}:gcode_apply"),
        "none",
        PAGE + "apply the previewed sync.",
        body="form",
    ),
    Route(
        "GET", "/page/thumb/{ipn}", lazy(f"{A}:thumbnail"), "none", "A print's thumbnail kept by farmsync."
    ),
]

ROUTES: list[Route] = [
    Route(
        "GET", "/health", lazy(f"{W}:health"), "none", "Liveness: the process answers and the store opens."
    ),
    Route("GET", "/openapi.json", lazy(f"{W}:openapi"), "none", "This API's OpenAPI description."),
    Route("GET", "/validate", lazy(f"{W}:validate"), "service", "Check connections, ids and templates."),
    Route("GET", "/sync/status", lazy(f"{P}:status"), "service", "Print sync counts, cursor and failures."),
    Route(
        "POST",
        "/sync/archive/{archive_id:int}",
        lazy(f"{P}:sync_archive"),
        "service",
        "Sync one archive now; force refreshes parameters, image and link.",
        params=(FORCE,),
    ),
    Route(
        "POST",
        "/sync/backfill",
        lazy(f"{P}:backfill"),
        "service",
        "Sync every completed print not yet synced.",
        params=(MAX_ARCHIVES, BUDGET, RETRY),
    ),
    Route(
        "POST",
        "/webhooks/bambuddy",
        lazy(f"{P}:webhook"),
        "webhook",
        "Bambuddy notification (body up to 8 MiB, finish photo included): triggers an incremental tick.",
        params=(SECRET,),
        body="json-object",
    ),
    Route(
        "GET", "/filament/status", lazy(f"{F}:status"), "service", "Spool matching, pending usage, loaded."
    ),
    Route(
        "POST",
        "/sync/filament",
        lazy(f"{F}:sync_all"),
        "service",
        "Usage, then locations, then spools.",
        params=DRY_RUN,
    ),
    Route(
        "POST",
        "/sync/filament/spools",
        lazy(f"{F}:sync_spools"),
        "service",
        "InvenTree spools to Bambuddy.",
        params=DRY_RUN,
    ),
    Route(
        "POST",
        "/sync/filament/locations",
        lazy(f"{F}:sync_locations"),
        "service",
        "Move InvenTree spools to the printers Bambuddy assigns them to.",
        params=DRY_RUN,
    ),
    Route(
        "POST",
        "/sync/filament/usage",
        lazy(f"{F}:sync_usage"),
        "service",
        "Subtract Bambuddy usage from InvenTree, exactly once.",
        params=DRY_RUN,
    ),
    Route("GET", "/gcode/status", lazy(f"{G}:status"), "service", "G-code mirror state per printer."),
    Route(
        "POST",
        "/sync/gcode",
        lazy(f"{G}:sync"),
        "service",
        "Mirror the master folder onto the printers (or pull printer-only files back).",
        params=(
            *DRY_RUN,
            Param("pull", "boolean", "Copy printer-only files into the master instead of deleting them."),
        ),
    ),
    Route(
        "GET",
        "/",
        lazy("farmsync.web.dashboard:page"),
        "none",
        "The operator's page (HTML; signs in itself).",
    ),
    *PAGE_ROUTES,
    Route(
        "GET",
        "/metrics",
        lazy(f"{W}:metrics"),
        "service",
        "Prometheus metrics of this process (open without a token when METRICS_PUBLIC=true).",
    ),
    Route(
        "POST",
        "/notify/test",
        lazy(f"{W}:notify_test"),
        "service",
        "Send a test notification to NOTIFY_URL now.",
    ),
]

MANUAL_PATHS = {r.path for r in ROUTES if r.auth == "service"} | {"/health", "/openapi.json"}

app_router = Router(ROUTES, authorize)
api_router = Router([r for r in ROUTES if r.path in MANUAL_PATHS], authorize)


def single(method: str, target: str, auth: Auth) -> Router:
    """A router that runs one handler on any path (a deployed function's own URL), plus /health."""
    handler = lazy(target)
    return Router(
        [
            Route("GET", "/health", lazy(f"{W}:health"), "none"),
            Route(method, "/{rest:path}", handler, auth),
            Route(method, "/", handler, auth),
        ],
        authorize,
    )
