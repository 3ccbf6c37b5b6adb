"""Typed async client for the InvenTree REST API, across server versions.

Facts it relies on (reference: inventree-api.md): lists page only when ``limit`` is sent (then
``{count, next, results}``), so it is always sent; ``POST /api/stock/`` answers a list on 1.0+ and an object
before; parameters moved to ``/api/parameter/`` at API 430; status codes must be JSON integers (anything else
silently becomes OK); remove/transfer take ``notes`` (``note`` is ignored) and quantities with ≤ 5 decimals; a
location filter includes sublocations unless ``cascade=false``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import date
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from farmsync.clients.http import COUNTERS, DEFAULT_RETRY, HttpClient, RequestCounters, RetryPolicy, Sleep
from farmsync.clients.inventree_models import (
    GENERIC_PARAMETERS_API,
    TRACKING_BY_PART_API,
    WEB_PREFIX_API,
    InvenTreeProbe,
    ParameterTemplate,
    Part,
    PartCategory,
    PartParameter,
    ServerInfo,
    StockAdjustment,
    StockItem,
    StockLocation,
    StockStatus,
    StockTrackingEntry,
)
from farmsync.clients.limit import AdaptiveLimit
from farmsync.clients.parsing import parse_list, parse_one
from farmsync.errors import (
    InputError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamNotFound,
    UpstreamValidation,
)

SYSTEM = "inventree"
NAME_MAX = 100
DESCRIPTION_MAX = 250
NOTES_MAX = 512
QUANTITY_DECIMALS = 5
REQUIRED_ROLES = {
    "part": ("view", "add", "change"),
    "part_category": ("view",),
    "stock": ("view", "add", "change"),
    "stock_location": ("view",),
}

LOCKED_ATTEMPTS = 6
"""How often a write answered ``database is locked`` is tried in all (with backoff between tries)."""

Layout = Literal["legacy", "generic"]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class InvenTreeClient:
    """One InvenTree server. Build it once per process (:class:`farmsync.services.Services` holds it).

    ``base_url`` may be the site root or end in ``/api``; ``web_url`` (INVENTREE_WEB_URL) is where people open
    part pages when that differs from the API address (e.g. an internal API URL behind a public proxy).
    ``limit`` caps the requests in flight; by default it adapts to what the server keeps up with (see
    :mod:`farmsync.clients.limit`), None sends whatever the callers send.
    """

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        timeout: float = 30.0,
        web_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Sleep | None = None,
        counters: RequestCounters = COUNTERS,
        limit: AdaptiveLimit | Literal["adaptive"] | None = "adaptive",
    ) -> None:
        self.root = normalise_root(base_url)
        self._sleep: Sleep = sleep or asyncio.sleep
        self.web_base = (web_url or "").strip().rstrip("/") or self.root
        token = token.strip()
        if token[:6].lower() == "token ":
            token = token[6:].strip()
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Token {token}"
        extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
        self.http = HttpClient(
            SYSTEM,
            self.root,
            headers=headers,
            timeout=timeout,
            transport=transport,
            retry=retry,
            counters=counters,
            credential="INVENTREE_TOKEN" if token else None,
            secrets=[token],
            limit=AdaptiveLimit() if limit == "adaptive" else limit,
            **extra,
        )
        self._has_token = bool(token)
        self._info: ServerInfo | None = None
        self._info_lock = asyncio.Lock()
        self._layout: Layout | None = None
        self._templates: dict[str, ParameterTemplate] = {}
        self._templates_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> InvenTreeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ server

    async def server_info(self, *, refresh: bool = False) -> ServerInfo:
        """``GET /api/`` (cached). Sent with the token, so a bad token fails here with a 401."""
        async with self._info_lock:  # concurrent first callers share one request
            if self._info is None or refresh:
                self._info = self._one(ServerInfo, await self._get("/api/"), "GET", "/api/")
            return self._info

    async def api_version(self) -> int | None:
        return (await self.server_info()).api_version

    async def part_web_url(self, pk: int) -> str:
        """Where a person opens the part: ``/web/part/<pk>/`` from API 327, ``/part/<pk>/`` before."""
        return part_web_url(self.web_base, pk, await self.api_version())

    async def roles(self) -> dict[str, list[str]]:
        """``GET /api/user/roles/`` as ``{"part": ["view", "add", ...], ...}`` (a role without rights → [])."""
        return _roles_of(await self._get("/api/user/roles/"))

    async def probe(self) -> InvenTreeProbe:
        """Everything ``/validate`` wants to say about InvenTree, without raising for upstream problems."""
        try:
            info = await self.server_info(refresh=True)
        except UpstreamAuthError as exc:
            return InvenTreeProbe(reachable=True, token_valid=False, problems=[exc.detail or "token refused"])
        except UpstreamError as exc:
            return InvenTreeProbe(reachable=False, problems=[str(exc)])
        problems: list[str] = []
        username: str | None = None
        missing: list[str] = []
        token_valid: bool | None = None
        if not self._has_token:
            problems.append("no InvenTree token configured")
        else:
            try:
                data = await self._get("/api/user/roles/")
                token_valid = True
                username = data.get("username") if isinstance(data, dict) else None
                if not (isinstance(data, dict) and data.get("is_superuser") is True):
                    roles = _roles_of(data)
                    missing = [
                        f"{role}.{perm}"
                        for role, perms in REQUIRED_ROLES.items()
                        for perm in perms
                        if perm not in roles.get(role, [])
                    ]
                if missing:
                    problems.append("the token's user lacks: " + ", ".join(missing))
            except UpstreamAuthError as exc:
                token_valid = False
                problems.append(f"token refused: {exc.detail}")
            except UpstreamError as exc:
                problems.append(str(exc))
        layout: str | None = None
        try:
            layout = await self.parameter_layout()
        except UpstreamError as exc:
            problems.append(str(exc))
        return InvenTreeProbe(
            reachable=True,
            version=info.version,
            api_version=info.api_version,
            token_valid=token_valid,
            username=username,
            missing_roles=missing,
            parameter_layout=layout,
            problems=problems,
        )

    async def retry_locked(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` again (after a backoff) while InvenTree answers ``500 database is locked``.

        SQLite refused the write and rolled it back (inventree-api.md §6). ``attempt`` must be safe to repeat:
        an idempotent write, or one that looks before it writes (stock by batch, part by IPN)."""
        for tries in range(1, LOCKED_ATTEMPTS + 1):
            try:
                return await attempt()
            except UpstreamError as exc:
                if not is_locked(exc) or tries == LOCKED_ATTEMPTS:
                    raise
            await self._sleep(self.http.retry.delay(tries))
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------- parts

    async def parts_by_ipn(self, ipn: str, *, category: int | None = None) -> list[Part]:
        """Every part whose IPN matches exactly (case-insensitive). IPNs are not unique: expect several."""
        params = {"IPN": ipn, "category": category}
        return [p async for p in self._paged(Part, "/api/part/", params, page_size=10)]

    async def get_part(self, pk: int) -> Part:
        path = f"/api/part/{int(pk)}/"
        return self._one(Part, await self._get(path), "GET", path)

    async def create_part(
        self,
        name: str,
        *,
        ipn: str | None = None,
        description: str = "",
        category: int | None = None,
        component: bool = False,
        trackable: bool = False,
        assembly: bool = False,
        purchaseable: bool = False,
        salable: bool = False,
        virtual: bool = False,
        active: bool = True,
        units: str | None = None,
        keywords: str | None = None,
        link: str | None = None,
        notes: str | None = None,
    ) -> Part:
        """``POST /api/part/`` with every flag explicit (server defaults come from global settings).

        ``name`` is cut to 100 and ``description`` to 250 characters. (name, IPN, revision) must be unique.
        """
        body: dict[str, Any] = {
            "name": truncate(name, NAME_MAX),
            "description": truncate(description, DESCRIPTION_MAX),
            "component": component,
            "trackable": trackable,
            "assembly": assembly,
            "purchaseable": purchaseable,
            "salable": salable,
            "virtual": virtual,
            "active": active,
        }
        optional = {"IPN": ipn, "category": _int_or_none(category), "units": units, "keywords": keywords}
        optional |= {"link": link, "notes": notes}
        body |= {k: v for k, v in optional.items() if v is not None}
        data = await self.http.request_json("POST", "/api/part/", json=body)
        return self._one(Part, data, "POST", "/api/part/")

    async def upload_part_image(
        self, pk: int, data: bytes, filename: str, *, content_type: str = "image/png"
    ) -> Part:
        """Multipart ``PATCH /api/part/<pk>/`` with file field ``image``. InvenTree keeps the file name, so give
        a meaningful one (``BMB-<hash>.png``); it is reduced to safe characters here."""
        path = f"/api/part/{int(pk)}/"
        files = {"image": (safe_filename(filename, content_type), data, content_type)}
        # the same file again is harmless, so a locked answer is simply retried
        body = await self.retry_locked(lambda: self.http.request_json("PATCH", path, files=files))
        return self._one(Part, body, "PATCH", path)

    async def get_category(self, pk: int) -> PartCategory:
        path = f"/api/part/category/{int(pk)}/"
        return self._one(PartCategory, await self._get(path), "GET", path)

    async def get_location(self, pk: int) -> StockLocation:
        """Check ``structural`` before creating or moving stock there (the list filter ignores missing ids)."""
        path = f"/api/stock/location/{int(pk)}/"
        return self._one(StockLocation, await self._get(path), "GET", path)

    # ------------------------------------------------------------------- stock

    async def create_stock(
        self,
        part: int,
        quantity: float,
        *,
        location: int | None = None,
        batch: str | None = None,
        status: int = StockStatus.OK,
        notes: str | None = None,
        delete_on_deplete: bool | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> StockItem:
        """``POST /api/stock/``; the answer is a list (1.0+) or an object (≤ 0.17): one item either way."""
        body: dict[str, Any] = {
            "part": int(part),
            "quantity": _number(quantity),
            "status": status_code(status),
        }
        optional = {"location": _int_or_none(location), "batch": batch, "notes": notes}
        optional["delete_on_deplete"] = delete_on_deplete
        body |= {k: v for k, v in optional.items() if v is not None}
        body |= dict(extra or {})
        data = await self.http.request_json("POST", "/api/stock/", json=body)
        if isinstance(data, list):
            if not data:
                raise UpstreamError(SYSTEM, "POST", self._path("/api/stock/"), "created no stock item")
            data = data[0]
        return self._one(StockItem, data, "POST", "/api/stock/")

    async def iter_stock(
        self,
        *,
        batch: str | None = None,
        batch_regex: str | None = None,
        part: int | None = None,
        category: int | None = None,
        location: int | None = None,
        cascade: bool = False,
        in_stock: bool | None = None,
        include_variants: bool | None = None,
        part_detail: bool = True,
        location_detail: bool = False,
        page_size: int = 100,
        limit: int | None = None,
    ) -> AsyncIterator[StockItem]:
        """Stock items by filter, every page (or at most ``limit`` items). ``batch`` is exact
        (case-insensitive), ``batch_regex`` a case-insensitive regex; ``category`` includes subcategories;
        ``location`` is exact unless ``cascade``; a missing location id matches everything."""
        params: dict[str, Any] = {
            "batch": batch,
            "batch_regex": batch_regex,
            "part": _int_or_none(part),
            "category": _int_or_none(category),
            "location": _int_or_none(location),
            "cascade": cascade if location is not None else None,
            "in_stock": in_stock,
            "include_variants": include_variants,
            "part_detail": part_detail,
            "location_detail": location_detail,
        }
        if limit is not None:
            page_size = max(1, min(page_size, limit))
        count = 0
        async for item in self._paged(StockItem, "/api/stock/", params, page_size=page_size):
            yield item
            count += 1
            if limit is not None and count >= limit:
                return

    async def list_stock(self, **filters: Any) -> list[StockItem]:
        """:meth:`iter_stock` collected into a list (same keyword filters)."""
        return [item async for item in self.iter_stock(**filters)]

    async def get_stock(self, pk: int) -> StockItem:
        """``GET /api/stock/<pk>/``; :class:`UpstreamNotFound` once a removal depleted and deleted it."""
        path = f"/api/stock/{int(pk)}/"
        data = await self._get(path, {"part_detail": True})
        return self._one(StockItem, data, "GET", path)

    async def update_stock(self, pk: int, changes: Mapping[str, Any]) -> StockItem:
        """``PATCH /api/stock/<pk>/`` (e.g. ``{"delete_on_deplete": False}``); ``status`` is sent as an int."""
        body = dict(changes)
        if "status" in body:
            body["status"] = status_code(body["status"])
        path = f"/api/stock/{int(pk)}/"
        return self._one(StockItem, await self.http.request_json("PATCH", path, json=body), "PATCH", path)

    async def transfer_stock(
        self, items: Sequence[StockItem | int], location: int, *, notes: str = ""
    ) -> StockAdjustment:
        """Move whole items (a partial quantity would split them into a new pk) to ``location``.

        Items given by pk are read first for their quantity. The answer only echoes the request.
        """
        entries = []
        for item in items:
            stock = item if isinstance(item, StockItem) else await self.get_stock(item)
            entries.append({"pk": stock.pk, "quantity": decimal_text(stock.quantity)})
        body = {"items": entries, "location": int(location), "notes": truncate(notes, NOTES_MAX)}
        data = await self.http.request_json("POST", "/api/stock/transfer/", json=body)
        return self._one(StockAdjustment, data, "POST", "/api/stock/transfer/")

    async def remove_stock(self, item: StockItem | int, quantity: float, *, notes: str) -> StockAdjustment:
        """``POST /api/stock/remove/``. Over-removal is clamped and may delete the item (echoed ``pk`` None);
        ``notes`` lands on the tracking row, so make it a unique marker for :meth:`find_tracking`."""
        pk = item.pk if isinstance(item, StockItem) else int(item)
        body = {
            "items": [{"pk": pk, "quantity": decimal_text(quantity)}],
            "notes": truncate(notes, NOTES_MAX),
        }
        data = await self.http.request_json("POST", "/api/stock/remove/", json=body)
        return self._one(StockAdjustment, data, "POST", "/api/stock/remove/")

    async def find_tracking(
        self,
        notes: str,
        *,
        item: int | None = None,
        part: int | None = None,
        search: str | None = None,
    ) -> list[StockTrackingEntry]:
        """Tracking rows whose notes equal ``notes`` exactly (the server's ``search`` is a substring match).

        By ``part`` on API ≥ 450 (rows survive the item's deletion), else by ``item``. A deleted item
        raises :class:`UpstreamNotFound` (InvenTree answers 400 on an unknown ``item``).
        """
        if item is None and part is None:
            raise InputError("find_tracking needs an item or a part", field="item", expected="a pk")
        version = await self.api_version() or 0
        if item is not None and (part is None or version < TRACKING_BY_PART_API):
            rows = await self.search_tracking(search or notes.strip(), item=item)
        else:
            rows = await self.search_tracking(search or notes.strip(), part=part)
        wanted = truncate(notes, NOTES_MAX)
        return [row for row in rows if tracking_notes_match(row.notes, wanted)]

    async def search_tracking(
        self,
        search: str,
        *,
        item: int | None = None,
        part: int | None = None,
        min_date: date | None = None,
        page_size: int = 50,
    ) -> list[StockTrackingEntry]:
        """Every tracking row whose notes contain ``search`` (case-insensitive substring), all pages.

        ``part`` and ``min_date`` need API ≥ 450 (older servers ignore them silently, so don't send them
        there); neither ``item`` nor ``part`` searches the whole history. An unknown or deleted ``item`` (or
        ``part``) raises :class:`UpstreamNotFound` (InvenTree answers 400 "Select a valid choice").
        """
        params: dict[str, Any] = {"search": search.strip(), "item": _int_or_none(item)}
        params |= {"part": _int_or_none(part)}
        if min_date is not None:
            params["min_date"] = min_date.isoformat()
        path = "/api/stock/track/"
        try:
            return [row async for row in self._paged(StockTrackingEntry, path, params, page_size=page_size)]
        except UpstreamValidation as exc:
            if "item" in exc.errors or "part" in exc.errors:
                raise UpstreamNotFound(SYSTEM, "GET", exc.path, exc.detail, status=exc.status) from None
            raise

    # -------------------------------------------------------------- parameters

    async def parameter_layout(self) -> Layout:
        """``generic`` (``/api/parameter/``, API ≥ 430) or ``legacy`` (``/api/part/parameter/``).

        Decided from ``apiVersion``; only when the server reports none is ``/api/parameter/template/`` probed
        (404 means legacy).
        """
        if self._layout is None:
            version = await self.api_version()
            if version is not None:
                self._layout = "generic" if version >= GENERIC_PARAMETERS_API else "legacy"
            else:
                response = await self.http.request(
                    "GET", "/api/parameter/template/", params={"limit": 1}, expect=(404,)
                )
                self._layout = "legacy" if response.status_code == 404 else "generic"
        return self._layout

    async def find_parameter_template(self, name: str) -> ParameterTemplate | None:
        """The template called ``name``: exact match first, then a case-insensitive one (names are unique
        ignoring case, so a case variant would block creating ours)."""
        path = await self._template_path()
        exact = [t async for t in self._paged(ParameterTemplate, path, {"name": name}, page_size=5)]
        for template in exact:
            if template.name == name:
                return template
        found = [t async for t in self._paged(ParameterTemplate, path, {"search": name}, page_size=50)]
        for template in found:
            if template.name.casefold() == name.casefold():
                return template
        return None

    async def parameter_template(self, name: str) -> ParameterTemplate | None:
        """:meth:`find_parameter_template`, remembered for this client's life once found.

        Every new part needs the same templates; reading them per part or per run cost 2 requests a part. A miss
        is not remembered (someone may create the template later); call :meth:`forget_parameter_templates`
        when the server refuses a remembered one."""
        async with self._templates_lock:  # concurrent first callers share one lookup
            found = self._templates.get(name)
            if found is None:
                found = await self.find_parameter_template(name)
                if found is not None:
                    self._templates[name] = found
            return found

    def forget_parameter_templates(self) -> None:
        self._templates.clear()

    async def create_parameter_template(
        self, name: str, *, units: str = "", description: str = ""
    ) -> ParameterTemplate:
        path = await self._template_path()
        body: dict[str, Any] = {"name": name, "units": units, "description": description}
        if await self.parameter_layout() == "generic":
            body["model_type"] = "part"
        data = await self.http.request_json("POST", path, json=body)
        return self._one(ParameterTemplate, data, "POST", path)

    async def ensure_parameter_template(
        self, name: str, *, units: str = "", description: str = ""
    ) -> ParameterTemplate:
        """Find the template by name or create it."""
        found = await self.find_parameter_template(name)
        if found is not None:
            return found
        return await self.create_parameter_template(name, units=units, description=description)

    async def part_parameters(self, part: int, *, template: int | None = None) -> list[PartParameter]:
        """A part's parameters (optionally of one template), in either layout."""
        params: dict[str, Any] = {"template": _int_or_none(template)}
        if await self.parameter_layout() == "generic":
            path = "/api/parameter/"
            params |= {"model_type": "part", "model_id": int(part)}
        else:
            path = "/api/part/parameter/"
            params["part"] = int(part)
        rows = [p async for p in self._paged(PartParameter, path, params, page_size=50)]
        return [p for p in rows if p.part_pk in (None, int(part))]

    async def upsert_part_parameter(
        self,
        part: int,
        template: ParameterTemplate | int,
        data: str | float | int,
        *,
        note: str | None = None,
        new_part: bool = False,
    ) -> PartParameter:
        """Set one parameter of a part: PATCH the existing one, create it otherwise, never duplicate.

        Unchanged values are not written. A create that loses a race (400 "unique set") falls back to PATCH.
        ``new_part``: the caller created the part just now, so it has no parameters and the lookup is skipped
        (the create's unique check still stands behind it).
        """
        template_pk = template.pk if isinstance(template, ParameterTemplate) else int(template)
        text = parameter_text(data)
        looked = not new_part

        async def attempt() -> PartParameter:
            # after a locked answer, look again before writing
            nonlocal looked
            found = await self._find_parameter(part, template_pk) if looked else None
            looked = True
            return await self._upsert_parameter(part, template_pk, found, text, note)

        return await self.retry_locked(attempt)

    async def _upsert_parameter(
        self, part: int, template_pk: int, existing: PartParameter | None, text: str, note: str | None
    ) -> PartParameter:
        """Create the parameter (or PATCH ``existing``); see :meth:`upsert_part_parameter`."""
        if existing is None:
            try:
                return await self._create_parameter(part, template_pk, text, note)
            except UpstreamValidation as exc:
                if "unique" not in exc.detail.lower():
                    raise
                existing = await self._find_parameter(part, template_pk)
                if existing is None:
                    raise
        if existing.data == text and (note is None or existing.note == note):
            return existing
        changes: dict[str, Any] = {"data": text}
        if note is not None:
            changes["note"] = note
        path = await self._parameter_path(existing.pk)
        body = await self.http.request_json("PATCH", path, json=changes)
        return self._one(PartParameter, body, "PATCH", path)

    async def _find_parameter(self, part: int, template: int) -> PartParameter | None:
        for parameter in await self.part_parameters(part, template=template):
            if parameter.template == template:
                return parameter
        return None

    async def _create_parameter(self, part: int, template: int, text: str, note: str | None) -> PartParameter:
        body: dict[str, Any] = {"template": template, "data": text}
        if await self.parameter_layout() == "generic":
            path = "/api/parameter/"
            body |= {"model_type": "part", "model_id": int(part)}
        else:
            path = "/api/part/parameter/"
            body["part"] = int(part)
        if note is not None:
            body["note"] = note
        return self._one(PartParameter, await self.http.request_json("POST", path, json=body), "POST", path)

    async def _template_path(self) -> str:
        if await self.parameter_layout() == "generic":
            return "/api/parameter/template/"
        return "/api/part/parameter/template/"

    async def _parameter_path(self, pk: int) -> str:
        if await self.parameter_layout() == "generic":
            return f"/api/parameter/{int(pk)}/"
        return f"/api/part/parameter/{int(pk)}/"

    # ------------------------------------------------------------------ helpers

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.http.request_json("GET", path, params=params)

    async def _paged(
        self, model: type[M], path: str, params: Mapping[str, Any], *, page_size: int = 100
    ) -> AsyncIterator[M]:
        """Send ``limit`` always; follow ``offset`` until ``next`` is null. A plain list is one full page."""
        offset = 0
        while True:
            data = await self._get(path, {**params, "limit": max(1, page_size), "offset": offset})
            if isinstance(data, list):
                for row in self._list(model, data, "GET", path):
                    yield row
                return
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                raise UpstreamError(SYSTEM, "GET", self._path(path), "expected a list or {count, results}")
            for row in self._list(model, results, "GET", path):
                yield row
            offset += len(results)
            count = data.get("count")
            if not results or not data.get("next") or (isinstance(count, int) and offset >= count):
                return

    def _path(self, path: str) -> str:
        """The full URL path that error messages name (keeps a sub-path deployment's prefix)."""
        return httpx.URL(self.root).path.rstrip("/") + path

    def _one(self, model: type[M], data: Any, method: str, path: str) -> M:
        return parse_one(SYSTEM, model, data, method, self._path(path))

    def _list(self, model: type[M], data: Any, method: str, path: str) -> list[M]:
        return parse_list(SYSTEM, model, data, method, self._path(path))


def normalise_root(base_url: str) -> str:
    """The site root from either ``http://host:8000`` or ``http://host:8000/api`` (trailing slashes ignored)."""
    url = base_url.strip().rstrip("/")
    if url.lower().endswith("/api"):
        url = url[:-4].rstrip("/")
    return url


def part_web_url(web_base: str, pk: int, api_version: int | None) -> str:
    """The page a person opens for part ``pk``; ``/part/<pk>/`` when the version is unknown (it redirects)."""
    base = web_base.rstrip("/")
    if api_version is not None and api_version >= WEB_PREFIX_API:
        return f"{base}/web/part/{int(pk)}/"
    return f"{base}/part/{int(pk)}/"


def stock_web_url(web_base: str, pk: int, api_version: int | None) -> str:
    """The page a person opens for stock item ``pk`` (the same rule as :func:`part_web_url`)."""
    base = web_base.rstrip("/")
    if api_version is not None and api_version >= WEB_PREFIX_API:
        return f"{base}/web/stock/item/{int(pk)}/"
    return f"{base}/stock/item/{int(pk)}/"


def status_code(status: Any) -> int:
    """A stock status as the JSON integer InvenTree honours (strings and bools are refused here)."""
    if isinstance(status, bool) or not isinstance(status, int):
        raise InputError("stock status must be an integer code", field="status", expected="e.g. 10 (OK)")
    return int(status)


def truncate(text: str | None, limit: int) -> str:
    """At most ``limit`` characters, ending in "…" when something was cut."""
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def decimal_text(quantity: float) -> str:
    """A quantity with at most 5 decimals, fixed notation (InvenTree rejects a sixth decimal)."""
    text = f"{round(float(quantity), QUANTITY_DECIMALS):.{QUANTITY_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def parameter_text(value: str | float | int) -> str:
    """Parameter data as InvenTree stores it (a string); floats without binary noise, whole floats as ints."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(round(value, 6))
    return str(value).strip()


def is_locked(exc: BaseException) -> bool:
    """InvenTree on SQLite answered ``500 database is locked``: the write collided with another and was rolled
    back (inventree-api.md §6)."""
    return (
        isinstance(exc, UpstreamError)
        and exc.status == 500
        and "database is locked" in (exc.detail or "").lower()
    )


def tracking_notes_match(entry_notes: str | None, notes: str) -> bool:
    """Exact comparison (surrounding whitespace ignored): ``search`` also matched ``archive-42`` for ``archive-4``."""
    return (entry_notes or "").strip() == notes.strip()


def safe_filename(name: str, content_type: str = "image/png") -> str:
    """A file name InvenTree can keep: base name only, ``[A-Za-z0-9._-]``, with an image extension."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip(".-") or "image"
    if "." not in base:
        subtype = content_type.split(";", 1)[0].rsplit("/", 1)[-1].lower()
        base += "." + {"jpeg": "jpg"}.get(subtype, subtype or "png")
    return base[:100]


def _roles_of(data: Any) -> dict[str, list[str]]:
    roles = data.get("roles") if isinstance(data, dict) and isinstance(data.get("roles"), dict) else data
    if not isinstance(roles, dict):
        return {}
    return {str(k): [str(p) for p in v] if isinstance(v, list) else [] for k, v in roles.items()}


def _number(value: float) -> int | float:
    number = round(float(value), QUANTITY_DECIMALS)
    return int(number) if number.is_integer() else number


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
