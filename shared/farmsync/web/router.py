"""The thin dispatch over Starlette's routing, and the one place errors become HTTP responses.

The function targets (``app``, ``api``, ``webhook`` ...) and ``farmsync serve`` all dispatch through
:class:`Router`: Starlette matches the path, then the router checks who is calling, converts path parameters
and runs the handler, so a path behaves the same however farmsync is deployed. Errors map once:

==============================  ======================================================
InputError (and AuthRequired)   its own status (400/401/413/415/422), field + expected
UpstreamNotFound                404, naming the system, method and path (an id the caller gave may not exist)
UpstreamError                   502, naming the system, method and path
ConfigError                     503, one line per problem (the service is not set up)
StoreError                      503 (try again)
anything else                   500 with a reference id; the traceback goes to the log only
==============================  ======================================================
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response
from starlette.routing import Match
from starlette.routing import Route as StarletteRoute

from farmsync.errors import ConfigError, InputError, StoreError, UpstreamError, UpstreamNotFound
from farmsync.jsonable import jsonable
from farmsync.logs import action, get_logger, trace_context, trace_from_headers
from farmsync.web.call import INT64_MAX, Call, bounded_integer
from farmsync.web.inputs import field_schemas

Auth = Literal["none", "service", "webhook"]
Handler = Callable[[Call], Awaitable[Any]]
log = get_logger("web")


class JSONResponse(StarletteJSONResponse):
    """Starlette's JSON response that also renders text a caller sent that is not valid Unicode.

    Handlers and errors echo caller input (a webhook's ``event``, a bad query value); a lone surrogate such as
    ``"\\ud800"`` parses from JSON but cannot be encoded as UTF-8, so it is written as a JSON escape instead.
    """

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode(
                "ascii"
            )


class _Digits(Convertor[str]):
    """``{name:int}`` in a route: ASCII digits, kept as text until after authentication.

    Starlette's own ``int`` converts while matching, which would turn 5,000 digits into a 500 before the caller
    is even checked; :meth:`Route.convert` bounds the value afterwards instead, as a 422 naming it.
    """

    regex = "[0-9]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("farmsync_digits", _Digits())


@dataclass(frozen=True)
class Param:
    """A query parameter as the API description states it, read from the route's query model."""

    name: str
    kind: Literal["boolean", "integer", "string"]
    description: str
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Route:
    """One method + path template (``/sync/archive/{archive_id:int}``), its handler and who may call it.

    Templates use Starlette's syntax and Starlette's routing matches them (:attr:`matcher`). The query model is
    the handler's own (farmsync.web.inputs.takes_query) unless given; ``body`` is the JSON body's model, or
    "form" for the operator page's buttons.
    """

    method: str
    path: str
    handler: Handler
    auth: Auth = "service"
    summary: str = ""
    query: type[BaseModel] | None = None
    body: type[BaseModel] | Literal["form"] | None = None

    def __post_init__(self) -> None:
        if self.query is None:
            object.__setattr__(self, "query", getattr(self.handler, "query_model", None))

    @property
    def params(self) -> tuple[Param, ...]:
        """The query parameters, from the query model's schema (for the API description and the tests)."""
        if self.query is None:
            return ()
        return tuple(
            Param(
                name,
                schema["type"],
                schema.get("description", ""),
                schema.get("minimum"),
                schema.get("maximum"),
            )
            for name, schema in field_schemas(self.query).items()
        )

    @cached_property
    def matcher(self) -> StarletteRoute:
        template = (self.path.rstrip("/") or "/").replace(":int}", ":farmsync_digits}")
        return StarletteRoute(template, self.handler, methods=[self.method])

    def path_kinds(self) -> dict[str, str]:
        """Each path parameter's kind (``int``, ``str`` or ``path``), as the template declares it."""
        return {name: kind or "str" for name, kind in _TEMPLATE_PARAM.findall(self.path)}

    def convert(self, params: dict[str, str]) -> dict[str, Any]:
        """Typed path parameters; an ``int`` one outside 1..INT64_MAX is a 422 naming it (InputError)."""
        kinds = self.path_kinds()
        return {
            k: bounded_integer(v, k, PATH_INT_MIN, PATH_INT_MAX, where="path parameter")
            if kinds.get(k) == "int"
            else v
            for k, v in params.items()
        }


_TEMPLATE_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")


PATH_INT_MIN, PATH_INT_MAX = 1, INT64_MAX
"""Bounds of every ``{name:int}`` path parameter (ids in Bambuddy and InvenTree are positive 64-bit)."""


Authorizer = Callable[[Route, Call], Awaitable[None]]


def error_response(exc: BaseException) -> JSONResponse:
    """Map any exception to a JSON response that never carries a traceback or a secret."""
    if isinstance(exc, InputError):
        return JSONResponse(
            exc.as_dict(),
            status_code=exc.status_code,
            headers={"WWW-Authenticate": "Token"} if exc.status_code == 401 else None,
        )
    if isinstance(exc, UpstreamError):
        status = 404 if isinstance(exc, UpstreamNotFound) else 502
        body = {"error": str(exc), "status": status, "system": exc.system, "upstream_status": exc.status}
        return JSONResponse(body, status_code=status)
    if isinstance(exc, ConfigError):
        return JSONResponse(
            {"error": "farmsync is not configured for this", "problems": exc.problems, "status": 503},
            status_code=503,
        )
    if isinstance(exc, StoreError):
        return JSONResponse({"error": str(exc), "status": 503}, status_code=503)
    reference = uuid.uuid4().hex[:12]
    log.error("unexpected error", exc_info=exc, extra={"fields": {"reference": reference}})
    return JSONResponse({"error": "internal error", "reference": reference, "status": 500}, status_code=500)


class Router:
    """Matches a request to a route, checks auth, runs the handler and shapes the response."""

    def __init__(self, routes: list[Route], authorize: Authorizer) -> None:
        self.routes = routes
        self._authorize = authorize

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        """The route for ``method path``, its raw parameters, and the methods the path allows (for 405).

        Starlette's routing matches (a trailing slash is ignored); parameters are converted after
        authentication (:meth:`Route.convert`), so a caller without credentials learns nothing from them and a
        bad value is an ordinary 4xx.
        """
        scope = {"type": "http", "method": method, "path": path.rstrip("/") or "/", "root_path": ""}
        allowed: list[str] = []
        for route in self.routes:
            found, child = route.matcher.matches(scope)
            if found is Match.FULL:
                return route, child["path_params"], []
            if found is Match.PARTIAL:
                allowed.append(route.method)
        return None, {}, allowed

    async def dispatch(self, request: Request, *, prefix: str = "") -> Response:
        path = request.url.path
        if prefix and path.startswith(prefix):
            path = path[len(prefix) :] or "/"
        route, params, allowed = self.match(request.method, path)
        if route is None:
            if allowed:
                return JSONResponse(
                    {
                        "error": f"method {request.method} not allowed on {path}",
                        "status": 405,
                        "allowed": sorted(set(allowed)),
                    },
                    status_code=405,
                    headers={"Allow": ", ".join(sorted(set(allowed)))},
                )
            return JSONResponse({"error": f"no route {path}", "status": 404}, status_code=404)
        call = Call(request)
        trace_context.set(trace_from_headers(request.headers, os.environ.get("GOOGLE_CLOUD_PROJECT")))
        try:
            await self._authorize(route, call)
            call.path_params = route.convert(params)
            result = await route.handler(call)
        except Exception as exc:  # every error leaves as JSON, see the module docstring
            response = error_response(exc)
            action(
                log,
                "request failed",
                logging.ERROR
                if isinstance(exc, StoreError)
                else logging.WARNING
                if isinstance(exc, ConfigError)
                else logging.INFO,
                method=request.method,
                path=path,
                status=response.status_code,
                error=str(exc)[:300],
            )
            return response
        return as_response(result)


def as_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple) and len(result) == 2:
        body, status = result
        return JSONResponse(jsonable(body), status_code=status)
    return JSONResponse(jsonable(result))
