"""The simulated Bambuddy server: a Starlette app speaking Bambuddy 1.2.5.2's API under ``/api/v1``.

It answers like Bambuddy's FastAPI backend does: 404 ``{"detail":"Not Found"}`` for a path in the wrong
trailing-slash form (no redirect), 422 with FastAPI's error list for bad input, bare arrays where Bambuddy has no
envelope, and auth that is off by default (any key accepted) or on (``X-API-Key``/``Bearer`` ``bb_`` keys).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from farmsync_sim.bambuddy_state import APP_VERSION, PRINT_LOG_ORDERS, BambuddyState
from farmsync_sim.common import JSON, parse_dt
from farmsync_sim.control import Knobs, RequestLog, SimMiddleware, control_app
from farmsync_sim.webhook import EVENT_FOR_STATUS, finish_photo, finish_photo_fields, fire_webhook

PREFIX = "/api/v1"
THUMBNAIL_TOKEN_MESSAGE = (
    "Valid camera stream token required. Get one from POST /api/v1/printers/camera/stream-token"
)


class ApiError(Exception):
    """An HTTP error with FastAPI's body shape ``{"detail": ...}``."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(str(detail))


# ------------------------------------------------------------------------------------------ request models
# Field types and limits follow Bambuddy's pydantic schemas, so validation errors come out the same way.


class SpoolCreate(BaseModel):
    material: str = Field(..., min_length=1, max_length=50)
    subtype: str | None = None
    color_name: str | None = None
    rgba: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{8}$")
    extra_colors: str | None = None
    effect_type: str | None = None
    brand: str | None = None
    label_weight: int = 1000
    core_weight: int = 250
    core_weight_catalog_id: int | None = None
    weight_used: float = 0
    weight_used_baseline: float = 0
    slicer_filament: str | None = None
    slicer_filament_name: str | None = None
    nozzle_temp_min: int | None = None
    nozzle_temp_max: int | None = None
    note: str | None = Field(None, max_length=500)
    tag_uid: str | None = None
    tray_uuid: str | None = None
    data_origin: str | None = None
    tag_type: str | None = None
    cost_per_kg: float | None = Field(default=None, ge=0)
    weight_locked: bool = False
    last_scale_weight: int | None = None
    last_weighed_at: datetime | None = None
    category: str | None = Field(default=None, max_length=50)
    low_stock_threshold_pct: int | None = Field(default=None, ge=1, le=99)
    storage_location: str | None = Field(default=None, max_length=255)
    location_id: int | None = Field(default=None, gt=0)


class SpoolUpdate(BaseModel):
    material: str | None = None
    subtype: str | None = None
    color_name: str | None = None
    rgba: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{8}$")
    extra_colors: str | None = None
    effect_type: str | None = None
    brand: str | None = None
    label_weight: int | None = None
    core_weight: int | None = None
    core_weight_catalog_id: int | None = None
    weight_used: float | None = None
    slicer_filament: str | None = None
    slicer_filament_name: str | None = None
    nozzle_temp_min: int | None = None
    nozzle_temp_max: int | None = None
    note: str | None = Field(None, max_length=500)
    tag_uid: str | None = None
    tray_uuid: str | None = None
    data_origin: str | None = None
    tag_type: str | None = None
    cost_per_kg: float | None = Field(default=None, ge=0)
    weight_locked: bool | None = None
    category: str | None = Field(default=None, max_length=50)
    low_stock_threshold_pct: int | None = Field(default=None, ge=1, le=99)
    storage_location: str | None = Field(default=None, max_length=255)
    location_id: int | None = Field(default=None, gt=0)


class ArchiveUpdate(BaseModel):
    print_name: str | None = None
    is_favorite: bool | None = None
    tags: str | None = None
    notes: str | None = None
    cost: float | None = None
    failure_reason: str | None = None
    quantity: int | None = None
    # Assumption: no length check; the 500-character column is not enforced by SQLite.
    external_url: str | None = None
    printer_id: int | None = None
    project_id: int | None = None
    status: str | None = None


class AssignmentCreate(BaseModel):
    spool_id: int
    printer_id: int
    ams_id: int
    tray_id: int


# ------------------------------------------------------------------------------------------ input helpers


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def _fastapi_errors(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors(include_url=False):
        item: dict[str, Any] = {
            "type": error["type"],
            "loc": [where, *error["loc"]],
            "msg": error["msg"],
            "input": _jsonable(error.get("input")),
        }
        if error.get("ctx"):
            item["ctx"] = {k: _jsonable(v) for k, v in error["ctx"].items()}
        errors.append(item)
    return errors


def _int_error(where: str, name: str, raw: str) -> ApiError:
    return ApiError(
        422,
        [
            {
                "type": "int_parsing",
                "loc": [where, name],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": raw,
            }
        ],
    )


def _path_int(request: Request, name: str) -> int:
    raw = request.path_params[name]
    try:
        return int(raw)
    except ValueError:
        raise _int_error("path", name, raw) from None


def _query_int(
    request: Request, name: str, default: int | None, *, ge: int | None = None, le: int | None = None
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _int_error("query", name, raw) from None
    if ge is not None and value < ge:
        raise ApiError(
            422,
            [
                {
                    "type": "greater_than_equal",
                    "loc": ["query", name],
                    "msg": f"Input should be greater than or equal to {ge}",
                    "input": raw,
                    "ctx": {"ge": ge},
                }
            ],
        )
    if le is not None and value > le:
        raise ApiError(
            422,
            [
                {
                    "type": "less_than_equal",
                    "loc": ["query", name],
                    "msg": f"Input should be less than or equal to {le}",
                    "input": raw,
                    "ctx": {"le": le},
                }
            ],
        )
    return value


def _query_bool(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on", "t", "y"):
        return True
    if lowered in ("false", "0", "no", "off", "f", "n"):
        return False
    raise ApiError(
        422,
        [
            {
                "type": "bool_parsing",
                "loc": ["query", name],
                "msg": "Input should be a valid boolean, unable to interpret input",
                "input": raw,
            }
        ],
    )


def _query_datetime(request: Request, name: str, *, date_only: bool = False) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = parse_dt(raw)
    except ValueError:
        kind = "date" if date_only else "datetime"
        raise ApiError(
            422,
            [
                {
                    "type": f"{kind}_from_datetime_parsing" if date_only else "datetime_from_date_parsing",
                    "loc": ["query", name],
                    "msg": f"Input should be a valid {kind}",
                    "input": raw,
                }
            ],
        ) from None
    if date_only and value is not None:
        value = value.replace(hour=0, minute=0, second=0, microsecond=0)
    return value


async def _body(request: Request, model: type[BaseModel]) -> BaseModel:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except ValueError as exc:
        raise ApiError(
            422,
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", getattr(exc, "pos", 0)],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": getattr(exc, "msg", str(exc))},
                }
            ],
        ) from None
    if data is None:
        raise ApiError(422, [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, _fastapi_errors(exc, "body")) from None


# ------------------------------------------------------------------------------------------ auth


class AuthMiddleware:
    """Bambuddy's auth gate on ``/api/*``: off → everything passes unchecked; on → a known ``bb_`` key.

    The key may come as ``X-API-Key`` or ``Authorization: Bearer bb_...``. The thumbnail route is exempt: it
    checks its own ``?token=``. The key's scopes are left in ``scope["state"]`` for the permission checks.
    """

    def __init__(self, app: ASGIApp, state: BambuddyState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and not self.state.print_log_available
            and (scope["path"].startswith(f"{PREFIX}/print-log") or scope["path"].endswith("/runs"))
        ):
            await JSON({"detail": "Not Found"}, status_code=404)(scope, receive, send)
            return
        if scope["type"] == "http" and self.state.auth_enabled and scope["path"].startswith("/api/"):
            is_thumbnail = scope["path"].startswith(f"{PREFIX}/archives/") and scope["path"].endswith(
                "/thumbnail"
            )
            if not is_thumbnail:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                key = headers.get("x-api-key", "").strip()
                if not key:
                    scheme, _, value = headers.get("authorization", "").partition(" ")
                    if scheme.lower() == "bearer" and value.strip().startswith("bb_"):
                        key = value.strip()
                with self.state.lock:
                    scopes = self.state.api_keys.get(key) if key else None
                if scopes is None:
                    await JSON({"detail": "Authentication required"}, status_code=401)(scope, receive, send)
                    return
                scope.setdefault("state", {})["api_key_scopes"] = scopes
        await self.app(scope, receive, send)


def _require(request: Request, permission: str) -> None:
    scopes = request.scope.get("state", {}).get("api_key_scopes")
    if scopes is not None and not scopes.get(permission, False):
        raise ApiError(403, f"API key does not have '{permission}' permission")


# ------------------------------------------------------------------------------------------ the app

Handler = Callable[[Request], Awaitable[Response]]


def build_app(state: BambuddyState) -> Starlette:
    """The Bambuddy API as a Starlette app over ``state`` (no knobs; :class:`BambuddySim` adds those)."""

    def endpoint(handler: Callable[[Request], Awaitable[Any]]) -> Handler:
        async def run(request: Request) -> Response:
            try:
                result = await handler(request)
            except ApiError as exc:
                return JSON({"detail": exc.detail}, status_code=exc.status)
            return result if isinstance(result, Response) else JSON(result)

        return run

    def archive_or_404(request: Request) -> dict[str, Any]:
        archive = state.visible_archive(_path_int(request, "archive_id"))
        if archive is None:
            raise ApiError(404, "Archive not found")
        return archive

    def spool_or_404(request: Request) -> dict[str, Any]:
        spool_id = _path_int(request, "spool_id")
        with state.lock:
            spool = state.spools.get(spool_id)
        if spool is None:
            raise ApiError(404, "Spool not found")
        return spool

    # --- archives

    async def list_archives(request: Request) -> Any:
        _require(request, "can_read_status")
        limit = _query_int(request, "limit", 50)
        offset = _query_int(request, "offset", 0) or 0
        date_to = _query_datetime(request, "date_to", date_only=True)
        rows = state.list_archives(
            printer_id=_query_int(request, "printer_id", None),
            project_id=_query_int(request, "project_id", None),
            date_from=_query_datetime(request, "date_from", date_only=True),
            # Assumption: date_to includes the whole named day.
            date_to=date_to + timedelta(days=1) if date_to else None,
        )
        # SQLite semantics: a negative LIMIT means no limit, a negative OFFSET means none.
        rows = rows[max(offset, 0) :]
        if limit is not None and limit >= 0:
            rows = rows[:limit]
        return state.archives_json(rows)

    async def get_archive(request: Request) -> Any:
        _require(request, "can_read_status")
        return state.archives_json([archive_or_404(request)], detail=True)[0]

    async def patch_archive(request: Request) -> Any:
        _require(request, "can_manage_archives")
        archive = archive_or_404(request)
        changes = (await _body(request, ArchiveUpdate)).model_dump(exclude_unset=True)
        state.update_archive(archive["id"], changes)
        return state.archives_json([archive])[0]

    async def archive_thumbnail(request: Request) -> Any:
        if state.auth_enabled and not state.stream_token_valid(request.query_params.get("token")):
            raise ApiError(401, THUMBNAIL_TOKEN_MESSAGE)
        archive = archive_or_404(request)
        with state.lock:
            data = state.thumbnails.get(archive["id"]) if archive["thumbnail_path"] else None
        if data is None:
            # Assumption: the detail text for a missing thumbnail.
            raise ApiError(404, "Thumbnail not found")
        etag = f'"{archive["created_at"].timestamp():.0f}"'
        return Response(data, media_type="image/png", headers={"ETag": etag})

    async def archive_runs(request: Request) -> Any:
        _require(request, "can_read_status")
        archive = archive_or_404(request)
        # Assumption: a bare array of print-log items, newest first.
        return [state.print_log_json(r) for r in state.list_print_log(archive_id=archive["id"])]

    # --- print log and printers

    async def print_log(request: Request) -> Any:
        _require(request, "can_read_status")
        limit = _query_int(request, "limit", 50, ge=1, le=500) or 50
        offset = _query_int(request, "offset", 0, ge=0) or 0
        rows, total = state.print_log_page(
            offset,
            limit,
            status=request.query_params.get("status"),
            printer_id=_query_int(request, "printer_id", None),
            search=request.query_params.get("search"),
            created_by_username=request.query_params.get("created_by_username"),
            date_from=_query_datetime(request, "date_from"),
            date_to=_query_datetime(request, "date_to"),
        )
        return {"items": [state.print_log_json(r) for r in rows], "total": total}

    async def list_printers(request: Request) -> Any:
        _require(request, "can_read_status")
        with state.lock:
            printers = sorted(state.printers.values(), key=lambda p: (p["name"], p["id"]))
            return [state.printer_json(p) for p in printers]

    async def get_printer(request: Request) -> Any:
        _require(request, "can_read_status")
        with state.lock:
            printer = state.printers.get(_path_int(request, "printer_id"))
            if printer is None:
                raise ApiError(404, "Printer not found")
            return state.printer_json(printer)

    async def stream_token(request: Request) -> Any:
        _require(request, "can_read_status")
        return {"token": state.issue_stream_token()}

    async def version(request: Request) -> Any:
        return {"version": APP_VERSION, "update_available": False}

    # --- spools

    async def spools(request: Request) -> Any:
        if request.method == "POST":
            _require(request, "can_manage_inventory")
            data = (await _body(request, SpoolCreate)).model_dump()
            return state.spool_json(state.create_spool(data))
        _require(request, "can_read_status")
        include = _query_bool(request, "include_archived", False)
        return [state.spool_json(s) for s in state.list_spools(include)]

    async def spool_by_tag(request: Request) -> Any:
        _require(request, "can_read_status")
        spool = state.find_spool_by_tag(
            request.query_params.get("tag_uid"),
            request.query_params.get("tray_uuid"),
            _query_bool(request, "include_archived", False),
        )
        if spool is None:
            raise ApiError(404, "Spool not found")
        return state.spool_json(spool)

    async def spool_detail(request: Request) -> Any:
        # The scope is checked before the spool is looked up: a key without it gets 403 even for a missing
        # spool, which makes PATCH /inventory/spools/999999 a safe scope probe (bambuddy-api.md §11).
        _require(request, "can_read_status" if request.method == "GET" else "can_manage_inventory")
        spool = spool_or_404(request)
        if request.method == "GET":
            return state.spool_json(spool)
        if request.method == "DELETE":
            state.delete_spool(spool["id"])
            return {"status": "deleted"}
        changes = (await _body(request, SpoolUpdate)).model_dump(exclude_unset=True)
        return state.spool_json(state.update_spool(spool["id"], changes))

    async def spool_archive(request: Request) -> Any:
        _require(request, "can_manage_inventory")
        spool = spool_or_404(request)
        archived = request.url.path.endswith("/archive")
        updated = state.set_spool_archived(spool["id"], archived)
        # Right after this write archived_at comes back with a Z suffix (seen on the real server).
        return state.spool_json(updated, z_fields=("archived_at",) if archived else ())

    async def spool_usage(request: Request) -> Any:
        _require(request, "can_read_status")
        spool = spool_or_404(request)
        limit = _query_int(request, "limit", 50) or 0
        return [state.usage_json(u) for u in state.list_usage(limit=limit, spool_id=spool["id"])]

    # --- assignments and usage

    async def assignments(request: Request) -> Any:
        if request.method == "POST":
            _require(request, "can_manage_inventory")
            body = await _body(request, AssignmentCreate)
            assert isinstance(body, AssignmentCreate)
            with state.lock:
                spool = state.spools.get(body.spool_id)
                if spool is None:
                    raise ApiError(404, "Spool not found")
                if body.printer_id not in state.printers:
                    raise ApiError(404, "Printer not found")
                if spool["archived_at"] is not None:
                    # Assumption: the detail text for assigning an archived spool.
                    raise ApiError(400, "Cannot assign an archived spool")
                record = state.assign_spool(body.spool_id, body.printer_id, body.ams_id, body.tray_id)
                return state.assignment_json(record)
        _require(request, "can_read_status")
        printer_id = _query_int(request, "printer_id", None)
        with state.lock:
            rows = sorted(
                (
                    a
                    for a in state.assignments.values()
                    if printer_id is None or a["printer_id"] == printer_id
                ),
                key=lambda a: (a["printer_id"], a["ams_id"], a["tray_id"]),
            )
            return [state.assignment_json(a) for a in rows]

    async def unassign(request: Request) -> Any:
        _require(request, "can_manage_inventory")
        slot = (_path_int(request, "printer_id"), _path_int(request, "ams_id"), _path_int(request, "tray_id"))
        if not state.unassign_spool(*slot):
            # Assumption: the detail text for an empty slot.
            raise ApiError(404, "Assignment not found")
        return {"status": "deleted"}

    async def usage(request: Request) -> Any:
        _require(request, "can_read_status")
        # Assumption: default limit 100; no offset or cursor exists.
        limit = _query_int(request, "limit", 100) or 0
        rows = state.list_usage(limit=limit, printer_id=_query_int(request, "printer_id", None))
        return [state.usage_json(u) for u in rows]

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSON({"detail": "Not Found"}, status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        headers = exc.headers if isinstance(exc, HTTPException) else None
        return JSON({"detail": "Method Not Allowed"}, status_code=405, headers=headers)

    p = PREFIX
    routes = [
        Route(f"{p}/archives/", endpoint(list_archives), methods=["GET"]),
        Route(f"{p}/archives/{{archive_id}}", endpoint(get_archive), methods=["GET"]),
        Route(f"{p}/archives/{{archive_id}}", endpoint(patch_archive), methods=["PATCH"]),
        Route(f"{p}/archives/{{archive_id}}/thumbnail", endpoint(archive_thumbnail), methods=["GET"]),
        Route(f"{p}/archives/{{archive_id}}/runs", endpoint(archive_runs), methods=["GET"]),
        Route(f"{p}/print-log/", endpoint(print_log), methods=["GET"]),
        Route(f"{p}/printers/", endpoint(list_printers), methods=["GET"]),
        Route(f"{p}/printers/camera/stream-token", endpoint(stream_token), methods=["POST"]),
        Route(f"{p}/printers/{{printer_id}}", endpoint(get_printer), methods=["GET"]),
        Route(f"{p}/updates/version", endpoint(version), methods=["GET"]),
        Route(f"{p}/inventory/spools", endpoint(spools), methods=["GET", "POST"]),
        Route(f"{p}/inventory/spools/by-tag", endpoint(spool_by_tag), methods=["GET"]),
        Route(
            f"{p}/inventory/spools/{{spool_id}}", endpoint(spool_detail), methods=["GET", "PATCH", "DELETE"]
        ),
        Route(f"{p}/inventory/spools/{{spool_id}}/archive", endpoint(spool_archive), methods=["POST"]),
        Route(f"{p}/inventory/spools/{{spool_id}}/restore", endpoint(spool_archive), methods=["POST"]),
        Route(f"{p}/inventory/spools/{{spool_id}}/usage", endpoint(spool_usage), methods=["GET"]),
        Route(f"{p}/inventory/assignments", endpoint(assignments), methods=["GET", "POST"]),
        Route(
            f"{p}/inventory/assignments/{{printer_id}}/{{ams_id}}/{{tray_id}}",
            endpoint(unassign),
            methods=["DELETE"],
        ),
        Route(f"{p}/inventory/usage", endpoint(usage), methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    app.router.redirect_slashes = False
    return app


# ------------------------------------------------------------------------------------------ the server object


class BambuddySim:
    """One simulated Bambuddy: ``state``, ``knobs``, request ``log`` and the ASGI ``app`` that serves them.

    ``seed`` is a scenario's ``bambuddy`` section. ``api_key`` is always registered (with auth off it is simply
    not checked). :meth:`reset` reloads the seed into the same ``state`` object.
    """

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        *,
        api_key: str,
        auth: bool = False,
        knobs: Knobs | None = None,
    ) -> None:
        self.seed = seed or {}
        self.api_key = api_key
        self.default_auth = auth
        self.state = BambuddyState.from_seed(self.seed, api_key=api_key, auth=auth)
        self.knobs = knobs or Knobs()
        self._initial_knobs = self.knobs.as_dict()
        self.log = RequestLog()
        control = control_app(
            self.knobs,
            self.log,
            state_dump=self.state.dump,
            reset=self.reset,
            config=self.configure,
            extra_routes=_control_routes(self),
        )
        self.app = SimMiddleware(
            AuthMiddleware(build_app(self.state), self.state), control, self.knobs, self.log
        )

    def reset(self, seed: dict[str, Any] | None = None) -> None:
        """Back to the seed (or a new one): data, keys, tokens, auth, knobs and the request log."""
        if seed is not None:
            self.seed = seed
        with self.state.lock:
            self.state.load(self.seed)
            self.state.api_keys.clear()
            self.state.stream_tokens.clear()
            self.state.add_api_key(self.api_key)
            self.state.auth_enabled = self.default_auth
            self.state.print_log_available = True
            self.state.print_log_order = "released"
        self.knobs.update(**self._initial_knobs)
        self.log.clear()

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Server settings (``auth``, ``print_log``, ``print_log_order``); returns the current ones.

        ``print_log_order``: ``released`` (1.2.5.2, the default) or ``start_time`` (the next release)."""
        unknown = set(changes) - {"auth", "print_log", "print_log_order"}
        if unknown:
            raise ValueError(f"unknown setting(s): {sorted(unknown)}")
        order = changes.get("print_log_order", self.state.print_log_order)
        if order not in PRINT_LOG_ORDERS:
            raise ValueError(f"print_log_order must be one of {PRINT_LOG_ORDERS}")
        if "auth" in changes:
            self.state.auth_enabled = bool(changes["auth"])
        if "print_log" in changes:
            self.state.print_log_available = bool(changes["print_log"])
        self.state.print_log_order = order
        return {
            "auth": self.state.auth_enabled,
            "print_log": self.state.print_log_available,
            "print_log_order": self.state.print_log_order,
            "version": APP_VERSION,
        }

    def webhook_fields(self, run_id: int) -> tuple[str, dict[str, Any]]:
        """The event and payload fields Bambuddy would send for print-log run ``run_id``."""
        with self.state.lock:
            run = self.state.print_log[run_id]
            archive = self.state.archives.get(run["archive_id"]) if run["archive_id"] else None
            event = EVENT_FOR_STATUS.get(run["status"], "print_complete")
            fields = {
                "printer": run["printer_name"],
                "filename": run["print_name"] or "Unknown",
                "duration": (archive or {}).get("print_time_seconds") or run["duration_seconds"],
                "filament_grams": run["filament_used_grams"],
                "reason": run["failure_reason"] if run["status"] == "failed" else None,
            }
        return event, fields

    def fire_webhook(
        self,
        url: str,
        secret: str | None,
        run_id: int | None = None,
        *,
        photo_bytes: int | None = None,
        **overrides: Any,
    ) -> httpx.Response:
        """Send the webhook for ``run_id`` (default: the newest print-log run), as Bambuddy would.

        ``photo_bytes``: the run has a finish photo of that size; it travels as ``finish_photo_url`` and, up to
        2,500,000 bytes, as base64 ``image`` (bambuddy-api.md §6)."""
        with self.state.lock:
            run_id = run_id or max(self.state.print_log, default=None)
        if run_id is None:
            raise ValueError("no print-log run to announce")
        event, fields = self.webhook_fields(run_id)
        if photo_bytes is not None:
            with self.state.lock:
                archive_id = self.state.print_log[run_id]["archive_id"]
            fields.update(finish_photo_fields(archive_id, finish_photo(photo_bytes, seed=run_id)))
        event = overrides.pop("event", event)
        return fire_webhook(url, secret, event, **{**fields, **overrides})


def _control_routes(sim: BambuddySim) -> list[Route]:
    """``/_sim/`` mutations for processes that can't call Python (the demo, benchmarks)."""

    async def add_print(request: Request) -> Response:
        body = await request.json()
        printer = body.pop("printer", None) or body.pop("printer_id", None)
        if printer is None:
            with sim.state.lock:
                printer = min(sim.state.printers)
        if body.get("at"):
            body["at"] = parse_dt(body["at"])
        return JSON(sim.state.print_log_json(sim.state.add_print(printer, **body)), status_code=201)

    async def add_usage(request: Request) -> Response:
        body = await request.json()
        row = sim.state.add_usage(body.pop("spool_id"), body.pop("weight_used"), **body)
        return JSON(sim.state.usage_json(row), status_code=201)

    async def assign(request: Request) -> Response:
        body = await request.json()
        record = sim.state.assign_spool(
            body["spool_id"], body["printer_id"], body.get("ams_id", 0), body.get("tray_id", 0)
        )
        return JSON(sim.state.assignment_json(record), status_code=201)

    async def unassign(request: Request) -> Response:
        p = request.path_params
        found = sim.state.unassign_spool(int(p["printer_id"]), int(p["ams_id"]), int(p["tray_id"]))
        return JSON({"unassigned": found})

    async def delete_archive(request: Request) -> Response:
        hard = request.query_params.get("hard", "false").lower() == "true"
        sim.state.delete_archive(int(request.path_params["archive_id"]), hard=hard)
        return JSON({"deleted": True, "hard": hard})

    async def webhook(request: Request) -> Response:
        body = await request.json()
        url, secret = body.pop("url"), body.pop("secret", None)
        # In a worker thread: the receiver may call back into this server before it answers.
        response = await run_in_threadpool(
            sim.fire_webhook, url, secret, body.pop("run_id", None), **body.pop("fields", {}), **body
        )
        return JSON({"status": response.status_code, "body": response.text[:2000]})

    return [
        Route("/_sim/prints", add_print, methods=["POST"]),
        Route("/_sim/usage", add_usage, methods=["POST"]),
        Route("/_sim/assignments", assign, methods=["POST"]),
        Route("/_sim/assignments/{printer_id:int}/{ams_id:int}/{tray_id:int}", unassign, methods=["DELETE"]),
        Route("/_sim/archives/{archive_id:int}", delete_archive, methods=["DELETE"]),
        Route("/_sim/webhook", webhook, methods=["POST"]),
    ]
