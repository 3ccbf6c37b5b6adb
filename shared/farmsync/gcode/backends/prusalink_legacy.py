"""PrusaLink 0.8 on a Raspberry Pi (MK3/MK3S), printer-apis.md §3.

Differences from Buddy that matter here: ``status.storage`` is a *list*; storages are ``local`` (writable) and
``sdcard`` (read-only); names are long (no 8.3) and listings carry sizes and ``read_only``; auth is digest with
``qop=auth``/MD5-sess/opaque (realm "Administrator") or ``X-Api-Key`` (wrong key: 403); the server speaks HTTP/1.0
(no keep-alive); PUT wants ``Content-Type: text/x.gcode`` or ``application/octet-stream``; a non-empty folder
needs ``Force: ?1``; and a new file can be 404 for 1-2 s after its PUT (inotify lag), so verification retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

import httpx

from farmsync.clients.http import HttpClient, decode_json
from farmsync.errors import ConfigError, UpstreamConflict, UpstreamError, UpstreamValidation
from farmsync.gcode.backends.base import (
    Kind,
    PrinterStatus,
    ProgressCallback,
    RemoteEntry,
    UploadResult,
)
from farmsync.gcode.backends.common import (
    UPLOAD_RETRY,
    FileBody,
    HttpBackend,
    Sleep,
    UploadVerificationError,
    basename,
    check_path,
    join,
    local_size,
    name_problem,
    parent_of,
    quote_path,
    quote_segment,
    reworded,
    same_origin_path,
)
from farmsync.gcode.backends.digest import DigestAuth

IDLE_STATES = frozenset({"IDLE", "READY", "FINISHED", "STOPPED"})
READ_ONLY_STORAGES = frozenset({"sdcard"})
VERIFY_DELAYS = (0.25, 0.5, 0.75, 1.0, 1.5)
"""Waits between size checks after a PUT: about 4 s in all, covering PrusaLink's 1-2 s inotify lag."""

ListingCache = MutableMapping[str, tuple[str, Any]]


class PrusaLinkLegacyBackend(HttpBackend):
    """PrusaLink 0.8.x (Raspberry Pi) v1 file API."""

    kind = Kind.PRUSALINK_LEGACY

    def __init__(
        self,
        name: str,
        host: str,
        *,
        username: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        storage: str = "local",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        listing_cache: ListingCache | None = None,
        idle_states: Iterable[str] = IDLE_STATES,
        max_connections: int = 2,
        verify_delays: tuple[float, ...] = VERIFY_DELAYS,
    ) -> None:
        headers: dict[str, str] = {}
        self.auth: DigestAuth | None = None
        if api_key:
            headers["X-Api-Key"] = api_key
        elif username and password:
            self.auth = DigestAuth(username, password)
        else:
            raise ConfigError(f"{name}: prusalink-legacy needs api_key, or username and password")
        http = HttpClient(
            name,
            host,
            headers=headers,
            auth=self.auth,
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            max_connections=max_connections,
            secrets=[s for s in (password, api_key) if s],
        )
        super().__init__(name, http, sleep=sleep)
        self.storage = storage
        self.read_only_storage = storage in READ_ONLY_STORAGES
        self.idle_states = frozenset(s.upper() for s in idle_states)
        self.listing_cache: ListingCache = listing_cache if listing_cache is not None else {}
        self.verify_delays = verify_delays

    def _url(self, path: str) -> str:
        base = f"/api/v1/files/{quote_segment(self.storage)}"
        return f"{base}/{quote_path(path)}" if path else base

    def translate(self, error: UpstreamError, op: str) -> UpstreamError:
        if error.status == 409 and self.read_only_storage:
            return reworded(error, f"{error.detail}: storage {self.storage!r} is read-only")
        if error.status == 507:
            return reworded(error, f"{error.detail}: the printer's storage is full", UpstreamError)
        return error

    async def _authenticated(self) -> None:
        """With digest, make sure a nonce is held before a PUT so its body is not sent into a 401."""
        if self.auth is not None and not self.auth.has_challenge:
            await self.call("status", "GET", "/api/v1/status")

    def _refuse_read_only(self, method: str, path: str) -> None:
        if self.read_only_storage:
            raise self.refuse(method, self._url(path), f"storage {self.storage!r} is read-only")

    # ------------------------------------------------------------------ status

    async def status(self) -> PrinterStatus:
        data = await self.call_json("status", "GET", "/api/v1/status")
        state = str((data.get("printer") or {}).get("state") or "UNKNOWN").upper()
        storages = data.get("storage")
        storages = (
            storages if isinstance(storages, list) else [storages] if isinstance(storages, dict) else []
        )
        names = [str(s.get("name") or s.get("path", "")).strip("/") for s in storages if isinstance(s, dict)]
        detail = f"storages: {', '.join(names)}" if names else ""
        if names and self.storage not in names:
            detail += f"; configured storage {self.storage!r} is missing"
        return PrinterStatus(state=state, idle=state in self.idle_states, detail=detail)

    # ------------------------------------------------------------------ listing

    async def _folder(self, path: str) -> dict[str, Any]:
        url = self._url(path)
        cached = self.listing_cache.get(url)
        headers = {"If-None-Match": cached[0]} if cached else None
        response = await self.call("list", "GET", url, headers=headers)
        if response.status_code == 304 and cached:
            return cached[1]
        if response.status_code == 304:
            response = await self.call("list", "GET", url)
        data = decode_json(self.name, "GET", url, response)
        if not isinstance(data, dict):
            raise UpstreamError(self.name, "GET", url, "folder listing is not an object")
        if response.headers.get("ETag"):
            self.listing_cache[url] = (response.headers["ETag"], data)
        return data

    def _entry(self, parent: str, child: dict[str, Any]) -> RemoteEntry | None:
        name = str(child.get("display_name") or child.get("name") or "")
        problem = name_problem(name)
        if problem:
            self.skip(join(parent, name), problem)
            return None
        path = join(parent, name)
        is_dir = str(child.get("type", "")).upper() == "FOLDER"
        refs = child.get("refs") if isinstance(child.get("refs"), dict) else {}
        size = child.get("size")
        mtime = child.get("m_timestamp")
        return RemoteEntry(
            path=path,
            is_dir=is_dir,
            size=None if is_dir or not isinstance(size, int) else size,
            mtime=float(mtime) if isinstance(mtime, int | float) and mtime else None,
            read_only=self.read_only_storage or bool(child.get("read_only", child.get("ro", False))),
            ref=quote_path(path),
            download_ref=None if is_dir else refs.get("download"),
        )

    async def _walk(self, path: str, out: list[RemoteEntry]) -> None:
        data = await self._folder(path)
        folders = []
        for child in data.get("children") or []:
            entry = self._entry(path, child) if isinstance(child, dict) else None
            if entry is None:
                continue
            out.append(entry)
            if entry.is_dir:
                folders.append(entry.path)
        for folder in folders:  # HTTP/1.0, one connection per request: stay sequential
            await self._walk(folder, out)

    async def list_tree(self, root: str = "") -> list[RemoteEntry]:
        root = check_path(root, what="root", allow_root=True)
        out: list[RemoteEntry] = []
        await self._walk(root, out)
        return sorted(out, key=lambda e: e.path)

    async def stat(self, path: str) -> RemoteEntry | None:
        path = check_path(path)
        response = await self.call("stat", "GET", self._url(path), expect=(404,))
        if response.status_code == 404:
            return None
        data = decode_json(self.name, "GET", self._url(path), response)
        return self._entry(parent_of(path), {**data, "display_name": basename(path)})

    # ------------------------------------------------------------------ upload

    async def upload(
        self,
        path: str,
        source: Path,
        *,
        size: int,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        path = check_path(path)
        self._refuse_read_only("PUT", path)
        if size <= 0:
            raise self.refuse("PUT", self._url(path), "refusing to upload a 0-byte file")
        local_size(source, size)
        await self._authenticated()
        url = self._url(path)
        body = FileBody(source, size, progress=progress)
        headers = {
            "Overwrite": "?1",
            "Print-After-Upload": "?0",
            "Content-Length": str(size),
            # text/x.gcode for every name: with octet-stream PrusaLink sniffs the content (a .bgcode got 500)
            "Content-Type": "text/x.gcode",
        }
        await self.call("upload", "PUT", url, content=body, headers=headers, retry=UPLOAD_RETRY)
        entry = await self._verify(path)
        if entry.size != size:
            raise UploadVerificationError(
                self.name, "GET", url, f"printer holds {entry.size} bytes after upload, {size} were sent"
            )
        notes = [f"sent {body.passes} times"] if body.passes > 1 else []
        return UploadResult(path=path, size=size, mtime=entry.mtime, verified=True, notes=notes)

    async def _verify(self, path: str) -> RemoteEntry:
        """The uploaded file's entry, waiting out PrusaLink's short 404 after a PUT."""
        for delay in (*self.verify_delays, None):
            entry = await self.stat(path)
            if entry is not None and entry.size is not None:
                return entry
            if delay is None:
                break
            await self._sleep(delay)
        raise UploadVerificationError(
            self.name, "GET", self._url(path), "the uploaded file did not appear on the printer"
        )

    # ------------------------------------------------------------------ delete / mkdir / download

    def _entry_url(self, entry: RemoteEntry) -> str:
        return self._url(check_path(entry.path))

    async def delete_file(self, entry: RemoteEntry) -> None:
        self._refuse_read_only("DELETE", entry.path)
        await self.call("delete", "DELETE", self._entry_url(entry), expect=(404,))

    async def delete_folder(self, entry: RemoteEntry) -> None:
        """Deletes an emptied folder; no ``Force``, so a folder that still holds files gives 409."""
        self._refuse_read_only("DELETE", entry.path)
        await self.call("delete", "DELETE", self._entry_url(entry), expect=(404,))

    async def make_folder(self, path: str) -> None:
        path = check_path(path)
        self._refuse_read_only("PUT", path)
        headers = {"Create-Folder": "?1", "Content-Length": "0"}
        response = await self.call(
            "mkdir", "PUT", self._url(path), content=b"", headers=headers, expect=(409,)
        )
        if response.status_code == 409:
            existing = await self.stat(path)
            if existing is None or not existing.is_dir:
                raise self.error(
                    UpstreamConflict, "PUT", self._url(path), "a file with that name exists", 409
                )

    async def download(
        self, entry: RemoteEntry, dest: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        check_path(entry.path)
        if entry.is_dir or not entry.download_ref:
            raise self.error(UpstreamValidation, "GET", self._entry_url(entry), "no download link for entry")
        url = same_origin_path(self.http.base_url, entry.download_ref)
        return await self.stream_to_file(url, dest, progress=progress)
