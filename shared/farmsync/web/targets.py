"""What a function target needs to dispatch: who may call a route, and a router for one handler on any path.

Kept apart from the route table (farmsync.web.app), so the ``webhook`` and tick targets answer without
importing every route's module (cold start, #17).
"""

from __future__ import annotations

from farmsync.services import get_services
from farmsync.web.auth import require_service_token, require_webhook_secret
from farmsync.web.call import Call
from farmsync.web.handlers import system
from farmsync.web.router import Auth, Handler, Route, Router

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


def single(method: str, handler: Handler, auth: Auth) -> Router:
    """A router that runs one handler on any path (a deployed function's own URL), plus /health."""
    return Router(
        [
            Route("GET", "/health", system.health, "none"),
            Route(method, "/{rest:path}", handler, auth),
            Route(method, "/", handler, auth),
        ],
        authorize,
    )
