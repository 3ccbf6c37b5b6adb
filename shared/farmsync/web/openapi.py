"""Build the OpenAPI description from the route table and its pydantic models, so it cannot drift from them.

``python -m farmsync.web.openapi`` rewrites ``shared/farmsync/web/openapi.json`` (kept in the repository and
served at ``/openapi.json``); a test fails when the committed file differs from what the routes say.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from farmsync import __version__
from farmsync.web.app import ROUTES
from farmsync.web.inputs import field_schemas
from farmsync.web.router import PATH_INT_MAX, PATH_INT_MIN, Route

OUTPUT = Path(__file__).with_name("openapi.json")

ERROR = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, in one line."},
        "status": {"type": "integer"},
        "field": {"type": "string", "description": "The input that was refused."},
        "expected": {"type": "string", "description": "What that input should have been."},
        "system": {"type": "string", "description": "The upstream system that failed or has no such object."},
    },
}

STATUS_TEXT = {
    "200": "Done; the body reports what happened.",
    "303": "The operator page's button was handled: back to the page, which says what happened.",
    "403": "The operator page's form came without its CSRF token.",
    "400": "Malformed input (e.g. a body that is not JSON).",
    "401": "Missing or wrong token or secret.",
    "404": "No such route, or no such object in Bambuddy, InvenTree or a printer (an archive for "
    "/sync/archive); the body names which.",
    "405": "Method not allowed on this path.",
    "409": "The feature is switched off in the settings.",
    "413": "Body too large (the webhook takes up to 8 MiB; other routes 1 MiB).",
    "415": "Body is not JSON.",
    "422": "A parameter or field has the wrong type or range.",
    "502": "Bambuddy, InvenTree or a printer failed; the body names which.",
    "503": "farmsync is not configured for this, or its store is unavailable.",
}


PAGE_PREFIXES = ("/login", "/logout", "/page/")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")


def _path(route: Route) -> str:
    return route.matcher.path_format  # Starlette's own reading of the template: "{archive_id}"


def _operation(route: Route) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for name, kind in route.path_kinds().items():
        schema: dict[str, Any] = (
            {"type": "integer", "minimum": PATH_INT_MIN, "maximum": PATH_INT_MAX}
            if kind == "int"
            else {"type": "string"}
        )
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, schema in field_schemas(route.query).items() if route.query else ():
        description = schema.pop("description", "")
        parameters.append(
            {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
        )
    codes = ["200", "404", "405"]
    if route.auth != "none":
        codes.append("401")
    if route.query or route.body or "{" in route.path:
        codes.append("422")
    if route.body:
        codes += ["400", "413", "415"]
    if route.path not in ("/health", "/openapi.json", "/") and not route.path.startswith(PAGE_PREFIXES):
        codes += ["409", "502", "503"]
    if route.body == "form":  # the operator page's buttons: a form, answered by a redirect back to the page
        codes += ["303", "401", "403", "413", "415", "422", "502", "503"]
    if route.path.startswith("/page/thumb/"):
        codes.append("401")
    responses: dict[str, Any] = {}
    for code in sorted(set(codes)):
        if code == "200" and route.path.startswith("/page/thumb/"):
            content = {kind: {"schema": {"type": "string", "format": "binary"}} for kind in IMAGE_TYPES}
        elif code == "200":
            content = (
                {"text/html": {"schema": {"type": "string"}}}
                if route.path == "/" or route.body == "form"  # a followed redirect lands on the page
                else {"text/plain": {"schema": {"type": "string"}}}
                if route.path == "/metrics"
                else {"application/json": {"schema": {"type": "object"}}}
            )
        elif code == "303":
            content = {"text/plain": {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        responses[code] = {"description": STATUS_TEXT.get(code, ""), "content": content}
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": (route.method.lower() + "_" + re.sub(r"\W+", "_", _path(route)).strip("_")) or "root",
        "parameters": parameters,
        "responses": responses,
    }
    if route.auth == "service":
        operation["security"] = [{"serviceToken": []}, {}]
    elif route.auth == "webhook":
        operation["security"] = [{"webhookBearer": []}, {"webhookHeader": []}, {"webhookQuery": []}, {}]
    if route.body == "form":
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            },
        }
    elif route.body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body_schema(route.body)}},
        }
    return operation


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A JSON body's schema from its model: the fields it reads, and whether others are allowed."""
    schema: dict[str, Any] = {"type": "object", "properties": field_schemas(model)}
    if model.model_config.get("extra") == "allow":
        schema["additionalProperties"] = True
    return schema


def build() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(_path(route), {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "farmsync",
            "version": __version__,
            "description": "Bambuddy prints to InvenTree stock, filament spools, and G-code on printers. "
            "Manual routes need X-Service-Token when SERVICE_API_TOKEN is set; the webhook needs "
            "WEBHOOK_SHARED_SECRET when set, as Authorization: Bearer, X-Sync-Secret or ?secret= (the "
            "query parameter is for callers that cannot send headers; it may end up in access logs). The "
            "empty security alternative applies when the token or secret is not set.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "serviceToken": {"type": "apiKey", "in": "header", "name": "X-Service-Token"},
                "webhookBearer": {"type": "http", "scheme": "bearer"},
                "webhookHeader": {"type": "apiKey", "in": "header", "name": "X-Sync-Secret"},
                "webhookQuery": {"type": "apiKey", "in": "query", "name": "secret"},
            },
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
