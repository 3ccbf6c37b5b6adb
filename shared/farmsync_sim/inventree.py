"""The simulated InvenTree server: a Starlette app speaking InvenTree's REST API under ``/api/``.

Behaviour follows a real API-425 server (and the documented changes up to 530, chosen by ``apiVersion``):
DRF token auth with its exact 401 bodies, plain arrays or ``{count,next,previous,results}`` pages, unknown
filters ignored, ``{"detail":"API endpoint not found","url":...}`` for unknown paths or non-numeric ids.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from farmsync_sim import inventree_ops as ops
from farmsync_sim.common import JSON, parse_multipart
from farmsync_sim.control import Knobs, RequestLog, SimMiddleware, control_app
from farmsync_sim.drf import INVALID_CHOICE, ApiError, paginate, query_bool
from farmsync_sim.inventree_state import (
    DEFAULT_API_VERSION,
    GENERIC_PARAMETERS_API,
    HISTORY_SURVIVES_API,
    STOCK_STATUS,
    TOKEN_ME_API,
    InvenTreeState,
    version_text,
)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
NOT_PROVIDED = "Authentication credentials were not provided."
NO_PERMISSION = "You do not have permission to perform this action."

User = dict[str, Any]
Handler = Callable[[Request, User | None], Awaitable[Any]]


class Body:
    """A parsed request body: ``data`` (JSON object or form fields) and uploaded ``files``."""

    def __init__(self, data: Any, files: dict[str, tuple[str | None, bytes]] | None = None) -> None:
        self.data = data
        self.files = files or {}

    def mapping(self) -> dict[str, Any]:
        if not isinstance(self.data, dict):
            raise ApiError(
                400,
                {
                    "non_field_errors": [
                        f"Invalid data. Expected a dictionary, but got {type(self.data).__name__}."
                    ]
                },
            )
        return self.data


async def read_body(request: Request) -> Body:
    """JSON, urlencoded or multipart, as DRF's parsers accept them."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    if not raw:
        return Body({})
    if content_type.startswith("multipart/form-data"):
        fields = parse_multipart(raw, content_type)
        data = {k: v.decode("utf-8", "replace") for k, (fname, v) in fields.items() if fname is None}
        files = {k: (fname, v) for k, (fname, v) in fields.items() if fname is not None}
        return Body(data, files)
    if content_type.startswith("application/x-www-form-urlencoded"):
        return Body(dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)))
    try:
        return Body(json.loads(raw))
    except ValueError as exc:
        message = getattr(exc, "msg", str(exc))
        where = (
            f": line {exc.lineno} column {exc.colno} (char {exc.pos})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise ApiError(400, {"detail": f"JSON parse error - {message}{where}"}) from None


# ------------------------------------------------------------------------------------------ auth


def authenticate(state: InvenTreeState, request: Request) -> User | None:
    """DRF's token (and basic) authentication: None when no credentials, 401 when they are bad."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "token":
        token = rest.strip()
        if not token:
            raise ApiError(401, {"detail": "Invalid token header. No credentials provided."})
        if " " in token:
            raise ApiError(401, {"detail": "Invalid token header. Token string should not contain spaces."})
        user = state.user_for_token(token)
        if user is None:
            raise ApiError(401, {"detail": "Invalid token."})
        return user
    if scheme.lower() == "basic":
        try:
            username, _, password = base64.b64decode(rest.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(
                401, {"detail": "Invalid basic header. Credentials not correctly base64 encoded."}
            ) from None
        with state.lock:
            for user in state.users.values():
                if user["username"] == username and user["password"] == password:
                    return user
        raise ApiError(401, {"detail": "Invalid username/password."})
    # Bearer and anything else belong to other authenticators (OAuth2): no credentials for token auth.
    return None


def _error_response(exc: ApiError) -> Response:
    headers = {"WWW-Authenticate": "Token"} if exc.status == 401 else None
    return JSON(exc.body, status_code=exc.status, headers=headers)


# ------------------------------------------------------------------------------------------ filter helpers


def _query_pk(request: Request, name: str, table: dict[int, Any]) -> int | None:
    """A validated choice filter: absent → None, unknown → 400 "Select a valid choice"."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        pk = int(raw)
    except ValueError:
        pk = -1
    if pk not in table:
        raise ApiError(400, {name: [INVALID_CHOICE]})
    return pk


def _query_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def _search(request: Request, *texts: Any) -> bool:
    term = (request.query_params.get("search") or "").strip().lower()
    return not term or any(term in str(t or "").lower() for t in texts)


def _order(
    request: Request, rows: list[dict[str, Any]], allowed: set[str], default: str = "pk"
) -> list[dict[str, Any]]:
    """``ordering=field|-field`` among ``allowed``; others are ignored. Assumption: the default order is pk."""
    raw = request.query_params.get("ordering") or default
    if raw.lstrip("-") not in allowed:
        raw = default
    field = raw.lstrip("-")

    def key(row: dict[str, Any]) -> tuple[bool, Any]:
        value = row.get(field)
        return (value is not None, value if value is not None else "")

    return sorted(sorted(rows, key=lambda r: r["pk"]), key=key, reverse=raw.startswith("-"))


# ------------------------------------------------------------------------------------------ the app


def build_app(state: InvenTreeState) -> Starlette:
    """The InvenTree API as a Starlette app over ``state`` (no knobs; :class:`InvenTreeSim` adds those)."""

    def not_found_body(request: Request) -> Response:
        return JSON({"detail": "API endpoint not found", "url": str(request.url)}, status_code=404)

    def view(
        handlers: dict[str, Handler],
        *,
        auth: bool = True,
        min_api: int | None = None,
        max_api: int | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                user = authenticate(state, request)
                if (min_api is not None and state.api_version < min_api) or (
                    max_api is not None and state.api_version > max_api
                ):
                    return not_found_body(request)
                if auth:
                    if user is None:
                        raise ApiError(401, {"detail": NOT_PROVIDED})
                    if not user["roles"]:
                        raise ApiError(403, {"detail": NO_PERMISSION})
                handler = handlers.get("GET" if request.method == "HEAD" else request.method)
                if handler is None:
                    raise ApiError(405, {"detail": f'Method "{request.method}" not allowed.'})
                result = await handler(request, user)
            except ApiError as exc:
                return _error_response(exc)
            return result if isinstance(result, Response) else JSON(result)

        return run

    def get_or_404(table: dict[int, dict[str, Any]], request: Request, model: str) -> dict[str, Any]:
        with state.lock:
            record = table.get(int(request.path_params["pk"]))
        if record is None:
            raise ApiError(404, {"detail": f"No {model} matches the given query."})
        return record

    def created(body: Any) -> Response:
        return JSON(body, status_code=201)

    # --- root and users

    async def root(request: Request, user: User | None) -> Any:
        staff = bool(user and user["is_staff"])
        return {
            "server": "InvenTree",
            "id": None,
            "version": version_text(state.api_version),
            "instance": "InvenTree",
            "apiVersion": state.api_version,
            "worker_running": False,
            "worker_count": 1,
            "worker_pending_tasks": 0,
            "plugins_enabled": False,
            "plugins_install_disabled": False,
            "email_configured": False,
            "debug_mode": False,
            "docker_mode": False,
            "default_locale": "en-us",
            "customize": {"logo": None, "splash": None, "login_message": None, "navbar_message": None},
            "active_plugins": False,
            "system_health": True if staff else None,
            "database": "sqlite3" if staff else None,
            "platform": "Linux" if staff else None,
            "installer": None,
            "target": None,
            "django_admin": "/admin/" if staff else None,
            "settings": {
                "sso_registration": False,
                "registration_enabled": False,
                "password_forgotten_enabled": True,
            },
        }

    async def me(request: Request, user: User | None) -> Any:
        assert user is not None
        keys = ("pk", "username", "first_name", "last_name", "email", "is_staff", "is_superuser", "is_active")
        return {k: user[k] for k in keys}

    async def roles(request: Request, user: User | None) -> Any:
        assert user is not None
        rights = ["view", "add", "change", "delete"] if user["roles"] else None
        return {
            "user": user["username"],
            "username": user["username"],
            "roles": {r: rights for r in ("part", "part_category", "stock", "stock_location")},
            "is_staff": user["is_staff"],
            "is_superuser": user["is_superuser"],
        }

    async def token(request: Request, user: User | None) -> Any:
        assert user is not None
        name = request.query_params.get("name") or "farmsync"
        key = state.issue_token(user["pk"], name)
        return {"token": key, "name": name, "expiry": state.tokens[key]["expiry"]}

    # --- parts

    async def part_list(request: Request, user: User | None) -> Any:
        with state.lock:
            raw_category = request.query_params.get("category")
            category = None if raw_category == "null" else _query_pk(request, "category", state.categories)
            cascade = query_bool(request, "cascade") is not False
            wanted = state.descendants(state.categories, category) if category and cascade else {category}
            ipn = request.query_params.get("IPN")
            ipn_regex = request.query_params.get("IPN_regex")
            flags = {f: query_bool(request, f) for f in ops.PART_FLAGS}
            has_ipn = query_bool(request, "has_ipn")
            rows = []
            for part in state.part_candidates(ipn=ipn):
                if request.query_params.get("category") not in (None, "") and part["category"] not in wanted:
                    continue
                if ipn and (part["IPN"] or "").lower() != ipn.lower():
                    continue
                if ipn_regex and not _regex(ipn_regex, part["IPN"] or ""):
                    continue
                if has_ipn is not None and bool(part["IPN"]) != has_ipn:
                    continue
                if any(v is not None and part[f] != v for f, v in flags.items()):
                    continue
                category_name = state.categories.get(part["category"], {}).get("name")
                if not _search(
                    request,
                    part["name"],
                    part["description"],
                    part["IPN"],
                    part["revision"],
                    part["keywords"],
                    category_name,
                ):
                    continue
                rows.append(part)
            rows = _order(request, rows, {"pk", "name", "IPN"})
            return paginate(request, [state.part_json(p) for p in rows])

    async def part_create(request: Request, user: User | None) -> Any:
        data = (await read_body(request)).mapping()
        part = ops.create_part(state, data, user["pk"] if user else None)
        return created(state.part_json(part))

    async def part_detail(request: Request, user: User | None) -> Any:
        part = get_or_404(state.parts, request, "Part")
        return state.part_json(part, parameters=query_bool(request, "parameters") is True)

    async def part_update(request: Request, user: User | None) -> Any:
        part = get_or_404(state.parts, request, "Part")
        body = await read_body(request)
        data = dict(body.mapping())
        upload = body.files.get("image")
        if upload is not None:
            ops.check_image(upload[1])
            data.pop("image", None)
        elif data.get("image") == "":
            data.pop("image")
        elif data.get("image") is not None:
            # A JSON string is not a file upload.
            raise ApiError(
                400, {"image": ["The submitted data was not a file. Check the encoding type on the form."]}
            )
        ops.update_part(state, part, data)
        if upload is not None:
            ops.set_part_image(state, part, upload[0], upload[1])
        return state.part_json(part)

    # --- categories and locations

    def tree_list(table_name: str, to_json: Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
        async def handler(request: Request, user: User | None) -> Any:
            with state.lock:
                table: dict[int, dict[str, Any]] = getattr(state, table_name)
                raw_parent = request.query_params.get("parent")
                parent = None
                if raw_parent not in (None, "", "null"):
                    parent = _query_pk(request, "parent", table)
                structural = query_bool(request, "structural")
                name = request.query_params.get("name")
                rows = [
                    n
                    for n in table.values()
                    if (raw_parent in (None, "") or n["parent"] == parent)
                    and (structural is None or n["structural"] == structural)
                    and (name is None or n["name"] == name)
                    and _search(request, n["name"], n["description"])
                ]
                return paginate(request, [to_json(n) for n in _order(request, rows, {"pk", "name"})])

        return handler

    def tree_create(table_name: str, to_json: Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
        async def handler(request: Request, user: User | None) -> Any:
            record = ops.create_tree_node(state, table_name, (await read_body(request)).mapping())
            return created(to_json(record))

        return handler

    async def category_detail(request: Request, user: User | None) -> Any:
        return state.category_json(get_or_404(state.categories, request, "PartCategory"))

    async def location_detail(request: Request, user: User | None) -> Any:
        location = get_or_404(state.locations, request, "StockLocation")
        return state.location_json(location, path_detail=query_bool(request, "path_detail") is True)

    # --- stock

    async def stock_list(request: Request, user: User | None) -> Any:
        with state.lock:
            part = _query_pk(request, "part", state.parts)
            category = _query_pk(request, "category", state.categories)
            categories = state.descendants(state.categories, category) if category is not None else None
            location_raw = request.query_params.get("location")
            cascade = query_bool(request, "cascade") is not False
            locations: set[int | None] | None = None
            if location_raw == "null":
                locations = {None}
            elif (loc := _query_int(request, "location")) is not None and loc in state.locations:
                # A location that does not exist is ignored (every item comes back).
                locations = set(state.descendants(state.locations, loc)) if cascade else {loc}
            batch = request.query_params.get("batch")
            batch_regex = request.query_params.get("batch_regex")
            in_stock = query_bool(request, "in_stock")
            status = _query_int(request, "status")
            rows = []
            for item in state.stock_candidates(part=part, batch=batch):
                item_part = state.parts.get(item["part"], {})
                if part is not None and item["part"] != part:
                    continue
                if categories is not None and item_part.get("category") not in categories:
                    continue
                if locations is not None and item["location"] not in locations:
                    continue
                if batch not in (None, "") and (item["batch"] or "").lower() != batch.lower():
                    continue
                if batch_regex and not _regex(batch_regex, item["batch"] or ""):
                    continue
                if in_stock is not None and state.in_stock(item) != in_stock:
                    continue
                if status is not None and item["status"] != status:
                    continue
                if not _search(
                    request,
                    item["batch"],
                    item["notes"],
                    item["serial"],
                    item_part.get("name"),
                    item_part.get("IPN"),
                ):
                    continue
                rows.append(item)
            rows = _order(request, rows, {"pk", "quantity", "batch", "updated", "part", "location", "status"})
            part_detail = query_bool(request, "part_detail") is True
            location_detail = query_bool(request, "location_detail") is True
            return paginate(
                request,
                [state.stock_json(i, part_detail=part_detail, location_detail=location_detail) for i in rows],
            )

    async def stock_create(request: Request, user: User | None) -> Any:
        item = ops.create_stock(state, (await read_body(request)).mapping(), user["pk"] if user else None)
        # Since API 383 the create endpoint answers with a list, and includes part_detail.
        return created([state.stock_json(item, part_detail=True, tracking_count=False)])

    async def stock_detail(request: Request, user: User | None) -> Any:
        item = get_or_404(state.stock_items, request, "StockItem")
        return state.stock_json(
            item,
            part_detail=query_bool(request, "part_detail") is True,
            location_detail=query_bool(request, "location_detail") is True,
        )

    async def stock_update(request: Request, user: User | None) -> Any:
        item = get_or_404(state.stock_items, request, "StockItem")
        ops.update_stock(state, item, (await read_body(request)).mapping())
        return state.stock_json(item)

    async def stock_delete(request: Request, user: User | None) -> Any:
        item = get_or_404(state.stock_items, request, "StockItem")
        state.delete_stock_item(item["pk"])
        return Response(status_code=204)

    def adjustment(kind: str) -> Handler:
        async def handler(request: Request, user: User | None) -> Any:
            data = (await read_body(request)).mapping()
            return created(ops.adjust_stock(state, kind, data, user["pk"] if user else None))

        return handler

    async def stock_status(request: Request, user: User | None) -> Any:
        values = {
            name: {"key": key, "name": name, "label": label, "color": color}
            for key, (name, label, color) in STOCK_STATUS.items()
        }
        return {"class": "StockStatus", "values": values}

    async def track_list(request: Request, user: User | None) -> Any:
        with state.lock:
            item = _query_pk(request, "item", state.stock_items)
            newer = state.api_version >= HISTORY_SURVIVES_API
            part = _query_pk(request, "part", state.parts) if newer else None
            min_date = _query_date(request, "min_date") if newer else None
            max_date = _query_date(request, "max_date") if newer else None
            user_filter = _query_int(request, "user")
            rows = [
                t
                for t in state.tracking_candidates(item=item, part=part)
                if (item is None or t["item"] == item)
                and (part is None or t["part"] == part)
                and (user_filter is None or t["user"] == user_filter)
                and (min_date is None or t["date"] >= min_date)
                and (max_date is None or t["date"] < max_date + timedelta(days=1))
                and _search(request, t["notes"])
            ]
            oldest_first = request.query_params.get("ordering") == "date"
            rows.sort(key=lambda t: (t["date"], t["pk"]), reverse=not oldest_first)
            details = {
                f: query_bool(request, f) is True for f in ("item_detail", "part_detail", "user_detail")
            }
            return paginate(request, [state.tracking_json(t, **details) for t in rows])

    async def track_detail(request: Request, user: User | None) -> Any:
        return state.tracking_json(get_or_404(state.tracking, request, "StockItemTracking"))

    # --- parameter templates and parameters (both layouts share handlers; routes are gated by version)

    async def template_list(request: Request, user: User | None) -> Any:
        with state.lock:
            generic = state.api_version >= GENERIC_PARAMETERS_API
            name = request.query_params.get("name")
            units_filter = request.query_params.get("units")
            checkbox = query_bool(request, "checkbox")
            model_type = request.query_params.get("model_type") if generic else None
            for_model = request.query_params.get("for_model") if generic else None
            enabled = query_bool(request, "enabled") if generic else None
            rows = [
                t
                for t in state.templates.values()
                if (name is None or t["name"] == name)
                and (units_filter is None or t["units"] == units_filter)
                and (checkbox is None or t["checkbox"] == checkbox)
                and (enabled is None or t["enabled"] == enabled)
                and (model_type is None or t["model_type"] == ops.MODEL_TYPES.get(model_type.lower()))
                and (for_model is None or t["model_type"] in (None, ops.MODEL_TYPES.get(for_model.lower())))
                and _search(request, t["name"], t["description"])
            ]
            return paginate(
                request,
                [state.template_json(t) for t in _order(request, rows, {"pk", "name", "units"}, "name")],
            )

    async def template_create(request: Request, user: User | None) -> Any:
        return created(state.template_json(ops.create_template(state, (await read_body(request)).mapping())))

    async def template_detail(request: Request, user: User | None) -> Any:
        return state.template_json(get_or_404(state.templates, request, template_model()))

    async def template_update(request: Request, user: User | None) -> Any:
        template = get_or_404(state.templates, request, template_model())
        return state.template_json(ops.update_template(state, template, (await read_body(request)).mapping()))

    async def template_delete(request: Request, user: User | None) -> Any:
        template = get_or_404(state.templates, request, template_model())
        with state.lock:
            del state.templates[template["pk"]]
            for key in [k for k, p in state.parameters.items() if p["template"] == template["pk"]]:
                del state.parameters[key]
        return Response(status_code=204)

    def template_model() -> str:
        return "ParameterTemplate" if state.api_version >= GENERIC_PARAMETERS_API else "PartParameterTemplate"

    def parameter_model() -> str:
        return "Parameter" if state.api_version >= GENERIC_PARAMETERS_API else "PartParameter"

    async def parameter_list(request: Request, user: User | None) -> Any:
        with state.lock:
            template = _query_pk(request, "template", state.templates)
            if state.api_version >= GENERIC_PARAMETERS_API:
                raw_type = request.query_params.get("model_type")
                model_type = ops.MODEL_TYPES.get(raw_type.lower(), "") if raw_type else None
                model_id = _query_int(request, "model_id")
            else:
                model_type, model_id = "part.part", _query_pk(request, "part", state.parts)
            rows = []
            candidates = (
                state.parameters_of(model_type, model_id)
                if model_type is not None and model_id is not None
                else state.parameters.values()
            )
            for p in candidates:
                if model_type is not None and p["model_type"] != model_type:
                    continue
                if model_id is not None and p["model_id"] != model_id:
                    continue
                if template is not None and p["template"] != template:
                    continue
                t = state.templates.get(p["template"], {})
                if not _search(request, p["data"], t.get("name"), t.get("description"), t.get("units")):
                    continue
                rows.append(p)
            return paginate(request, [state.parameter_json(p) for p in _order(request, rows, {"pk", "data"})])

    async def parameter_create(request: Request, user: User | None) -> Any:
        data = (await read_body(request)).mapping()
        return created(state.parameter_json(ops.create_parameter(state, data, user["pk"] if user else None)))

    async def parameter_detail(request: Request, user: User | None) -> Any:
        return state.parameter_json(get_or_404(state.parameters, request, parameter_model()))

    async def parameter_update(request: Request, user: User | None) -> Any:
        parameter = get_or_404(state.parameters, request, parameter_model())
        data = (await read_body(request)).mapping()
        return state.parameter_json(
            ops.update_parameter(state, parameter, data, user["pk"] if user else None)
        )

    async def parameter_delete(request: Request, user: User | None) -> Any:
        parameter = get_or_404(state.parameters, request, parameter_model())
        with state.lock:
            state.parameters.pop(parameter["pk"], None)
        return Response(status_code=204)

    # --- fallbacks

    async def not_found(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if path.startswith("/api/"):
            try:
                authenticate(state, request)
            except ApiError as error:
                return _error_response(error)
            return not_found_body(request)
        if match := re.fullmatch(r"/part/(\d+)/?", path):
            return RedirectResponse(f"/web/part/{match.group(1)}/", status_code=302)
        if path == "/web" or path.startswith("/web/"):
            return HTMLResponse("<!doctype html><title>InvenTree</title><div id='root'></div>")
        return HTMLResponse("<h1>Not Found</h1>", status_code=404)

    legacy = {"max_api": GENERIC_PARAMETERS_API - 1}
    generic = {"min_api": GENERIC_PARAMETERS_API}
    template_handlers: dict[str, Handler] = {"GET": template_list, "POST": template_create}
    template_item: dict[str, Handler] = {
        "GET": template_detail,
        "PATCH": template_update,
        "PUT": template_update,
        "DELETE": template_delete,
    }
    parameter_handlers: dict[str, Handler] = {"GET": parameter_list, "POST": parameter_create}
    parameter_item: dict[str, Handler] = {
        "GET": parameter_detail,
        "PATCH": parameter_update,
        "PUT": parameter_update,
        "DELETE": parameter_delete,
    }

    def route(path: str, handlers: dict[str, Handler], **options: Any) -> Route:
        return Route(path, view(handlers, **options), methods=ALL_METHODS)

    routes = [
        route("/api/", {"GET": root}, auth=False),
        route("/api/user/me/", {"GET": me}),
        route("/api/user/roles/", {"GET": roles}),
        route("/api/user/token/", {"GET": token}),
        route("/api/user/me/token/", {"GET": token}, min_api=TOKEN_ME_API),
        route("/api/part/", {"GET": part_list, "POST": part_create}),
        route("/api/part/{pk:int}/", {"GET": part_detail, "PATCH": part_update, "PUT": part_update}),
        route(
            "/api/part/category/",
            {
                "GET": tree_list("categories", state.category_json),
                "POST": tree_create("categories", state.category_json),
            },
        ),
        route("/api/part/category/{pk:int}/", {"GET": category_detail}),
        route("/api/part/parameter/template/", template_handlers, **legacy),
        route("/api/part/parameter/template/{pk:int}/", template_item, **legacy),
        route("/api/part/parameter/", parameter_handlers, **legacy),
        route("/api/part/parameter/{pk:int}/", parameter_item, **legacy),
        route("/api/parameter/template/", template_handlers, **generic),
        route("/api/parameter/template/{pk:int}/", template_item, **generic),
        route("/api/parameter/", parameter_handlers, **generic),
        route("/api/parameter/{pk:int}/", parameter_item, **generic),
        route(
            "/api/stock/location/",
            {
                "GET": tree_list("locations", state.location_json),
                "POST": tree_create("locations", state.location_json),
            },
        ),
        route("/api/stock/location/{pk:int}/", {"GET": location_detail}),
        route("/api/stock/", {"GET": stock_list, "POST": stock_create}),
        route(
            "/api/stock/{pk:int}/",
            {"GET": stock_detail, "PATCH": stock_update, "PUT": stock_update, "DELETE": stock_delete},
        ),
        route("/api/stock/transfer/", {"POST": adjustment("transfer")}),
        route("/api/stock/remove/", {"POST": adjustment("remove")}),
        route("/api/stock/add/", {"POST": adjustment("add")}),
        route("/api/stock/track/", {"GET": track_list}),
        route("/api/stock/track/{pk:int}/", {"GET": track_detail}),
        route("/api/stock/status/", {"GET": stock_status}),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.router.redirect_slashes = False
    return app


def _regex(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text, re.IGNORECASE) is not None
    except re.error:
        # Assumption: a pattern the database can't compile matches nothing.
        return False


def _query_date(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%d")
    except ValueError:
        raise ApiError(400, {name: ["Enter a valid date."]}) from None


# ------------------------------------------------------------------------------------------ the server object


class InvenTreeSim:
    """One simulated InvenTree: ``state``, ``knobs``, request ``log`` and the ASGI ``app``.

    ``seed`` is a scenario's ``inventree`` section. One staff user ``username``/``password`` exists, with
    ``token`` as its API token. :meth:`reset` reloads the seed into the same ``state`` object.
    """

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        *,
        token: str,
        api_version: int = DEFAULT_API_VERSION,
        username: str = "admin",
        password: str = "inventree",  # noqa: S107 - the simulated admin's fixed password
        knobs: Knobs | None = None,
    ) -> None:
        self.seed = seed or {}
        self.token = token
        self.username = username
        self.password = password
        self.default_api_version = api_version
        self.state = InvenTreeState(api_version=api_version)
        self.knobs = knobs or Knobs()
        self._initial_knobs = self.knobs.as_dict()
        self.log = RequestLog()
        self._load()
        control = control_app(
            self.knobs, self.log, state_dump=self.state.dump, reset=self.reset, config=self.configure
        )
        self.app = SimMiddleware(build_app(self.state), control, self.knobs, self.log, locked_writes=True)

    def _load(self) -> None:
        with self.state.lock:
            self.state.api_version = self.default_api_version
            self.state.load(self.seed)
            self.state.users.clear()
            self.state.tokens.clear()
            admin = self.state.add_user(self.username, self.password)
            self.state.issue_token(admin["pk"], "farmsync", token=self.token)

    def reset(self, seed: dict[str, Any] | None = None) -> None:
        """Back to the seed (or a new one): data, users, tokens, apiVersion, knobs and the request log."""
        if seed is not None:
            self.seed = seed
        self._load()
        self.knobs.update(**self._initial_knobs)
        self.log.clear()

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Server settings (``api_version``); returns the current ones."""
        unknown = set(changes) - {"api_version"}
        if unknown:
            raise ValueError(f"unknown setting(s): {sorted(unknown)}")
        if "api_version" in changes:
            self.state.api_version = int(changes["api_version"])
        return {"api_version": self.state.api_version, "version": version_text(self.state.api_version)}
