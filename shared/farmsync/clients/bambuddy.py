"""Typed async client for the Bambuddy REST API (``/api/v1``).

Facts it relies on (reference: bambuddy-api.md): trailing slashes are exact (``/archives/``, ``/printers/``,
``/print-log/`` need one; ``/inventory/...`` and ``/archives/{id}`` must not have one; the wrong form is a 404);
lists are bare arrays except the print log (``{items, total}``); timestamps are naive UTC; with auth off any key
passes; thumbnails ignore the key and need a camera stream token when auth is on.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from farmsync.clients.bambuddy_models import (
    Archive,
    BambuddyProbe,
    Printer,
    PrintLogEntry,
    PrintLogPage,
    Spool,
    SpoolAssignment,
    SpoolWrite,
    UsageRecord,
)
from farmsync.clients.http import (
    COUNTERS,
    DEFAULT_RETRY,
    HttpClient,
    RequestCounters,
    RetryPolicy,
    Sleep,
    decode_json,
)
from farmsync.clients.parsing import parse_list, parse_one
from farmsync.clients.timeutil import to_naive_utc_iso
from farmsync.errors import UpstreamAuthError, UpstreamError, UpstreamNotFound

SYSTEM = "bambuddy"
STREAM_TOKEN_TTL = 50 * 60.0
"""Bambuddy's camera stream tokens live 60 minutes; renew well before."""
PROBE_KEY = "bb_farmsync-probe-deliberately-invalid"
"""Sent by :meth:`BambuddyClient.auth_enabled`: accepted only when Bambuddy checks no keys at all."""
PRINT_LOG_MAX_LIMIT = 500
SCOPE_PROBES = {"archives": "/archives/999999", "spools": "/inventory/spools/999999"}
"""An id no farm reaches: an empty PATCH there answers 403 without the write scope, 404 with it."""
WRITE_SCOPE_NAMES = {"archives": "can_manage_archives", "spools": "can_manage_inventory"}

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Thumbnail:
    """An archive's preview image (PNG in practice) and its ETag (the file's mtime on the server)."""

    data: bytes
    content_type: str
    etag: str | None = None

    @property
    def extension(self) -> str:
        subtype = self.content_type.split(";", 1)[0].strip().rsplit("/", 1)[-1].lower()
        return {"jpeg": "jpg", "svg+xml": "svg"}.get(subtype, subtype or "png")


class BambuddyClient:
    """One Bambuddy server. Build it once per process (:class:`farmsync.services.Services` holds it).

    Thumbnail auth: tokens are not fetched up front. The first thumbnail is tried without a token; a 401 means
    auth is on, and from then on a camera stream token is fetched, cached for 50 minutes and renewed once on a
    401. This costs one extra request per process on servers with auth on and none on servers without, and it
    never depends on the stream-token route behaving the same with auth off. :meth:`auth_enabled` (or
    :meth:`probe`) sets the mode directly when it runs first.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Sleep | None = None,
        counters: RequestCounters = COUNTERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = normalise_base(base_url)
        self._api_key = api_key
        headers = {"Accept": "application/json"}
        if api_key:
            headers["X-API-Key"] = api_key
        extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
        self.http = HttpClient(
            SYSTEM,
            self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            retry=retry,
            counters=counters,
            credential="BAMBUDDY_API_KEY" if api_key else None,
            secrets=[api_key, PROBE_KEY],
            **extra,
        )
        self._clock = clock
        self._stream_token: tuple[str, float] | None = None
        self._token_lock: asyncio.Lock | None = None
        self._thumbnails_need_token: bool | None = None
        self._has_print_log: bool | None = None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> BambuddyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- archives

    async def list_archives(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        printer_id: int | None = None,
        project_id: int | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> list[Archive]:
        """One page of ``GET /archives/``, newest ``created_at`` first. No status filter exists: filter here."""
        params = {
            "limit": limit,
            "offset": offset,
            "printer_id": printer_id,
            "project_id": project_id,
            "date_from": _day(date_from),
            "date_to": _day(date_to),
        }
        return self._list(Archive, await self._get("/archives/", params), "GET", "/archives/")

    async def iter_archives(
        self,
        *,
        page_size: int = 100,
        overlap: int = 5,
        max_items: int | None = None,
        printer_id: int | None = None,
        project_id: int | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> AsyncIterator[Archive]:
        """Every archive, newest first, each id once.

        ``created_at`` has 1-second resolution and no tiebreaker, so rows of the same second may swap between
        pages; consecutive pages overlap by ``overlap`` rows and duplicates are dropped by id.
        """
        page_size = max(1, page_size)
        step = max(1, page_size - max(0, overlap))
        seen: set[int] = set()
        offset = 0
        stale_pages = 0
        while True:
            page = await self.list_archives(
                limit=page_size,
                offset=offset,
                printer_id=printer_id,
                project_id=project_id,
                date_from=date_from,
                date_to=date_to,
            )
            fresh = [archive for archive in page if archive.id not in seen]
            for archive in fresh:
                seen.add(archive.id)
                yield archive
                if max_items is not None and len(seen) >= max_items:
                    return
            stale_pages = 0 if fresh else stale_pages + 1
            if len(page) < page_size or stale_pages >= 2:  # 2 pages of nothing new: offset ignored?
                return
            offset += step

    async def all_archives(self, **kwargs: Any) -> list[Archive]:
        """:meth:`iter_archives` collected into a list."""
        return [archive async for archive in self.iter_archives(**kwargs)]

    async def get_archive(self, archive_id: int) -> Archive:
        """``GET /archives/{id}``; :class:`UpstreamNotFound` when it does not exist (or was deleted)."""
        path = f"/archives/{int(archive_id)}"
        return self._one(Archive, await self._get(path), "GET", path)

    async def set_external_url(self, archive_id: int, url: str | None) -> Archive:
        """``PATCH /archives/{id}`` with only ``external_url`` (None clears it). Needs can_manage_archives."""
        return await self.update_archive(archive_id, {"external_url": url})

    async def update_archive(self, archive_id: int, changes: Mapping[str, Any]) -> Archive:
        """``PATCH /archives/{id}``: only the keys given are written; returns the whole archive."""
        path = f"/archives/{int(archive_id)}"
        data = await self.http.request_json("PATCH", path, json=dict(changes))
        return self._one(Archive, data, "PATCH", path)

    async def archive_runs(self, archive_id: int) -> list[PrintLogEntry]:
        """``GET /archives/{id}/runs``: the print-log rows of one archive (reprints reuse the archive)."""
        path = f"/archives/{int(archive_id)}/runs"
        data = await self._get(path)
        if isinstance(data, dict) and "items" in data:
            data = data["items"]
        return self._list(PrintLogEntry, data, "GET", path)

    async def thumbnail(self, archive_id: int) -> Thumbnail | None:
        """The archive's thumbnail, or None when it has none (404). See the class doc for the token flow."""
        path = f"/archives/{int(archive_id)}/thumbnail"
        if self._thumbnails_need_token is not True:
            response = await self.http.request("GET", path, expect=(401, 404))
            if response.status_code != 401:
                self._thumbnails_need_token = False
                return _thumbnail(response)
            self._thumbnails_need_token = True
        refused: str | None = None
        for _attempt in (1, 2):
            token = await self._camera_token(refused=refused)
            response = await self.http.request("GET", path, params={"token": token}, expect=(401, 404))
            if response.status_code != 401:
                return _thumbnail(response)
            refused = token
        raise UpstreamAuthError(
            SYSTEM,
            "GET",
            response.request.url.path,
            "thumbnail refused a fresh camera stream token",
            status=401,
        )

    async def _camera_token(self, *, refused: str | None = None) -> str:
        """One token for every concurrent worker: Bambuddy mints a new one per call (bambuddy-api.md §11), so
        the first caller mints and the others wait for it instead of minting their own. ``refused``: a token
        the server just refused (dropped unless another worker has already replaced it)."""
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            if refused is not None and self._stream_token and self._stream_token[0] == refused:
                self._stream_token = None
            return await self._mint_camera_token()

    async def _mint_camera_token(self) -> str:
        now = self._clock()
        if self._stream_token and self._stream_token[1] > now:
            return self._stream_token[0]
        path = "/printers/camera/stream-token"
        # Minting a token changes nothing worth protecting, so this POST may be retried like a read.
        data = await self.http.request_json("POST", path, retry=self.http.retry)
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamError(SYSTEM, "POST", self._path(path), "answered without a token")
        self._stream_token = (token, now + STREAM_TOKEN_TTL)
        return token

    # ---------------------------------------------------------------- print log

    async def print_log(
        self,
        *,
        status: str | None = None,
        printer_id: int | None = None,
        search: str | None = None,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> PrintLogPage:
        """One page of ``GET /print-log/`` (newest first). ``limit`` is clamped to Bambuddy's 1–500."""
        params = {
            "status": status,
            "printer_id": printer_id,
            "search": search,
            "date_from": to_naive_utc_iso(date_from) if date_from else None,
            "date_to": to_naive_utc_iso(date_to) if date_to else None,
            "limit": min(PRINT_LOG_MAX_LIMIT, max(1, limit)),
            "offset": max(0, offset),
        }
        try:
            data = await self._get("/print-log/", params)
        except UpstreamNotFound:
            self._has_print_log = False
            raise
        page = self._one(PrintLogPage, data, "GET", "/print-log/")
        self._has_print_log = True
        return page

    async def iter_print_log(
        self,
        *,
        status: str | None = None,
        printer_id: int | None = None,
        search: str | None = None,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        page_size: int = 100,
        max_items: int | None = None,
    ) -> AsyncIterator[PrintLogEntry]:
        """Every matching print-log row, newest first, each id once (new rows shift pages; dedupe by id).

        Stop early (break, or ``max_items``) once rows are older than what you have already processed.
        """
        seen: set[int] = set()
        offset = 0
        while True:
            page = await self.print_log(
                status=status,
                printer_id=printer_id,
                search=search,
                date_from=date_from,
                date_to=date_to,
                limit=page_size,
                offset=offset,
            )
            for entry in page.items:
                if entry.id in seen:
                    continue
                seen.add(entry.id)
                yield entry
                if max_items is not None and len(seen) >= max_items:
                    return
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    async def has_print_log(self) -> bool:
        """Whether this Bambuddy has ``/print-log/`` (older versions answer 404). Cached once known."""
        if self._has_print_log is None:
            response = await self.http.request("GET", "/print-log/", params={"limit": 1}, expect=(404,))
            self._has_print_log = response.status_code != 404
        return self._has_print_log

    # ----------------------------------------------------------------- printers

    async def printers(self) -> list[Printer]:
        """``GET /printers/``, sorted by name. Archives carry only ``printer_id``: map names through this."""
        return self._list(Printer, await self._get("/printers/"), "GET", "/printers/")

    async def get_printer(self, printer_id: int) -> Printer:
        path = f"/printers/{int(printer_id)}"
        return self._one(Printer, await self._get(path), "GET", path)

    # ------------------------------------------------------------------- spools

    async def spools(self, *, include_archived: bool = False) -> list[Spool]:
        """``GET /inventory/spools`` (all of them; no paging)."""
        path = "/inventory/spools"
        data = await self._get(path, {"include_archived": include_archived})
        return self._list(Spool, data, "GET", path)

    async def get_spool(self, spool_id: int) -> Spool:
        path = f"/inventory/spools/{int(spool_id)}"
        return self._one(Spool, await self._get(path), "GET", path)

    async def find_spool_by_tag(
        self,
        *,
        tag_uid: str | None = None,
        tray_uuid: str | None = None,
        include_archived: bool = False,
    ) -> Spool | None:
        """``GET /inventory/spools/by-tag``. Bambuddy keeps only the last 16 hex digits of the query, so a
        non-hex ``tag_uid`` can never be found this way (search :meth:`spools` instead). None on 404."""
        path = "/inventory/spools/by-tag"
        params = {"tag_uid": tag_uid, "tray_uuid": tray_uuid, "include_archived": include_archived}
        response = await self.http.request("GET", path, params=params, expect=(404,))
        if response.status_code == 404:
            return None
        return self._one(Spool, _json(response), "GET", path)

    async def create_spool(self, spool: SpoolWrite | Mapping[str, Any]) -> Spool:
        """``POST /inventory/spools`` (``material`` is required). Bambuddy does not dedupe ``tag_uid``."""
        path = "/inventory/spools"
        data = await self.http.request_json("POST", path, json=_body(spool))
        return self._one(Spool, data, "POST", path)

    async def update_spool(self, spool_id: int, changes: SpoolWrite | Mapping[str, Any]) -> Spool:
        """``PATCH /inventory/spools/{id}`` with the fields set. Sending ``weight_used`` locks the weight."""
        path = f"/inventory/spools/{int(spool_id)}"
        data = await self.http.request_json("PATCH", path, json=_body(changes))
        return self._one(Spool, data, "PATCH", path)

    async def assignments(self, *, printer_id: int | None = None) -> list[SpoolAssignment]:
        """``GET /inventory/assignments``: which spool sits in which AMS slot."""
        path = "/inventory/assignments"
        return self._list(SpoolAssignment, await self._get(path, {"printer_id": printer_id}), "GET", path)

    async def usage(self, *, limit: int = 100, printer_id: int | None = None) -> list[UsageRecord]:
        """``GET /inventory/usage``, newest first. No offset: raise ``limit`` to reach older rows."""
        path = "/inventory/usage"
        data = await self._get(path, {"limit": max(1, limit), "printer_id": printer_id})
        return self._list(UsageRecord, data, "GET", path)

    async def spool_usage(self, spool_id: int, *, limit: int = 50) -> list[UsageRecord]:
        path = f"/inventory/spools/{int(spool_id)}/usage"
        return self._list(UsageRecord, await self._get(path, {"limit": max(1, limit)}), "GET", path)

    # -------------------------------------------------------------- validation

    async def version(self) -> str | None:
        """``GET /updates/version`` → ``"1.2.5.2"``; None if the answer carries no version."""
        data = await self._get("/updates/version")
        value = data.get("version") if isinstance(data, dict) else None
        return str(value) if value else None

    async def auth_enabled(self) -> bool:
        """Whether Bambuddy checks keys at all: a deliberately wrong key on ``GET /printers/`` is refused
        (401/403) only when auth is on. With auth off a 200 proves nothing about the configured key."""
        response = await self.http.request(
            "GET", "/printers/", headers={"X-API-Key": PROBE_KEY}, expect=(401, 403)
        )
        enabled = response.status_code in (401, 403)
        self._thumbnails_need_token = enabled
        return enabled

    async def has_write_scope(self, scope: str) -> bool:
        """Whether the key may write ``archives`` or ``spools``, by the safe probe of bambuddy-api.md §11.

        ``GET /auth/me`` claims every permission for any key, so instead an empty PATCH goes to an id that does
        not exist: 403 means the key lacks the scope, 404 means it has it; nothing is ever written."""
        path = SCOPE_PROBES[scope]
        response = await self.http.request("PATCH", path, json={}, expect=(403, 404))
        if response.status_code == 403:
            return False
        if response.status_code == 404:
            return True
        raise UpstreamError(
            SYSTEM, "PATCH", self._path(path), f"scope probe answered {response.status_code}, not 403/404"
        )

    async def probe(self) -> BambuddyProbe:
        """Everything ``/validate`` wants to say about Bambuddy, without raising for upstream problems."""
        problems: list[str] = []
        try:
            enabled = await self.auth_enabled()
        except UpstreamError as exc:
            return BambuddyProbe(reachable=False, problems=[str(exc)])
        key_valid: bool | None = None
        if enabled:
            try:
                await self.printers()
                key_valid = True
            except UpstreamAuthError as exc:
                key_valid = False
                problems.append(f"the API key was refused: {exc.detail}")
            except UpstreamError as exc:
                problems.append(str(exc))
        elif not self._api_key:
            problems.append("no API key configured (fine while Bambuddy auth is off)")
        version: str | None = None
        has_log: bool | None = None
        if key_valid is not False:
            try:
                version = await self.version()
            except UpstreamError as exc:
                problems.append(str(exc))
            try:
                has_log = await self.has_print_log()
                if not has_log:
                    problems.append("this Bambuddy has no /print-log/ (too old); archives are used instead")
            except UpstreamError as exc:
                problems.append(str(exc))
        return BambuddyProbe(
            reachable=True,
            version=version,
            auth_enabled=enabled,
            key_valid=key_valid,
            has_print_log=has_log,
            problems=problems,
        )

    # ------------------------------------------------------------------ helpers

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.http.request_json("GET", path, params=params)

    def _path(self, path: str) -> str:
        """The full URL path (``/api/v1/archives/``) that error messages name."""
        return httpx.URL(self.base_url).path.rstrip("/") + path

    def _one(self, model: type[M], data: Any, method: str, path: str) -> M:
        return parse_one(SYSTEM, model, data, method, self._path(path))

    def _list(self, model: type[M], data: Any, method: str, path: str) -> list[M]:
        return parse_list(SYSTEM, model, data, method, self._path(path))


def normalise_base(base_url: str) -> str:
    """``http://host:8000`` and ``.../api`` become ``.../api/v1``; a given ``/api/vN`` is kept as is."""
    url = base_url.strip().rstrip("/")
    if re.search(r"/api/v\d+$", url):
        return url
    if url.endswith("/api"):
        return url + "/v1"
    return url + "/api/v1"


def _day(value: date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat()


def _body(value: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    return dict(value)


def _json(response: httpx.Response) -> Any:
    return decode_json(SYSTEM, response.request.method, response.request.url.path, response)


def _thumbnail(response: httpx.Response) -> Thumbnail | None:
    if response.status_code == 404:
        return None
    return Thumbnail(
        data=response.content,
        content_type=response.headers.get("Content-Type", "image/png"),
        etag=response.headers.get("ETag"),
    )
