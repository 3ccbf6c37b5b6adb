"""PrusaLink 0.8 on a Raspberry Pi (MK3/MK3S), printer-apis.md §3.

Differences from Buddy that matter here: ``status.storage`` is a *list*; storages are ``local`` (writable) and
``sdcard`` (read-only); names are long (no 8.3) and listings carry sizes and ``read_only``; auth is digest with
``qop=auth``/MD5-sess/opaque (realm "Administrator") or ``X-Api-Key`` (wrong key: 403); the server speaks HTTP/1.0
(no keep-alive); PUT wants ``Content-Type: text/x.gcode`` or ``application/octet-stream``; a non-empty folder
needs ``Force: ?1``.

Its file view follows the disk through inotify (a loop that runs every 0.2 s). These behaviours of the real 0.8.1
shape this back end (measured on loopback; printer-apis.md §3):

- A new folder gets its inotify watch only when that loop handles the folder's creation. Whatever is made inside it
  before then (by a PUT that creates its parents, a ``Create-Folder`` of a nested path, or mkdirs back to back) is
  on disk but never in the view: 404 and unlisted until PrusaLink restarts. So folders are made one level at a
  time, each polled with HEAD until it shows (0.05-0.2 s) before anything goes inside it.
- A new file is 404 for about 0.2 s after its PUT, and a replaced one keeps its old size as long: verification
  polls (bounded) until the size matches.
- A DELETE of a file that is gone from disk but still in the view answers 500 (about 0.2 s): the delete is
  confirmed with HEAD before it counts as failed.
- ``status.storage`` names the storages by ``path`` ("/local"); their ``name`` is a label ("PrusaLink gcodes").
- A listing's ``ETag`` is a hash of the view's ``Last-Modified``, to the second: after a change later in that same
  second ``If-None-Match`` still gets 304. A listing is kept for revalidation only when it was served in a later
  second than the view's last change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, MutableMapping
from email.utils import parsedate_to_datetime
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
from farmsync.gcode.paths import in_scope

IDLE_STATES = frozenset({"IDLE", "READY", "FINISHED", "STOPPED"})
READ_ONLY_STORAGES = frozenset({"sdcard"})
SETTLE_DELAYS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 1.0)
"""Waits between checks of PrusaLink's file view after a change: 5 s in all. The view follows inotify events
handled every 0.2 s, so a change normally shows within 0.05-0.3 s; the long tail covers a loaded Raspberry Pi."""
VERIFY_DELAYS = SETTLE_DELAYS
"""Waits between checks after a PUT, until the file is there with the size sent."""
FOLDER_HEADERS = {"Create-Folder": "?1", "Content-Length": "0"}
RESTART_HINT = "its inotify file view missed it (it is on disk; restarting PrusaLink shows it)"

log = logging.getLogger("farmsync.gcode.backends")

ListingCache = MutableMapping[str, tuple[str, dict[str, Any]]]


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
        settle_delays: tuple[float, ...] = SETTLE_DELAYS,
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
        self.settle_delays = settle_delays
        self._folders: set[str] = set()
        """Folders seen in PrusaLink's view by this instance (listed or made here): no HEAD needed before a PUT."""
        self._folder_lock = asyncio.Lock()

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
        ids: list[str] = []
        present = False
        for item in storages:
            if not isinstance(item, dict):
                continue
            # 0.8.1 sends {"path": "/local", "name": "PrusaLink gcodes"}: the path is the id used in URLs
            path = str(item.get("path") or "").strip("/")
            label = str(item.get("name") or "").strip("/")
            ids.append(path or label)
            present = present or self.storage in (path, label)
        detail = f"storages: {', '.join(ids)}" if ids else ""
        if ids and not present:
            detail += f"; configured storage {self.storage!r} is missing"
        return PrinterStatus(state=state, idle=state in self.idle_states, detail=detail)

    # ------------------------------------------------------------------ listing

    async def _folder(self, path: str, *, gone_ok: bool = False) -> dict[str, Any] | None:
        """One folder's listing (revalidated by ETag when cached); None when ``gone_ok`` and it is 404."""
        url = self._url(path)
        cached = self.listing_cache.get(url)
        headers = {"If-None-Match": cached[0]} if cached else None
        expect = (404,) if gone_ok else ()
        response = await self.call("list", "GET", url, headers=headers, expect=expect)
        if response.status_code == 304 and cached:
            return cached[1]
        if response.status_code == 304:
            response = await self.call("list", "GET", url, expect=expect)
        if response.status_code == 404:
            self.listing_cache.pop(url, None)
            return None
        data = decode_json(self.name, "GET", url, response)
        if not isinstance(data, dict):
            raise UpstreamError(self.name, "GET", url, "folder listing is not an object")
        etag = response.headers.get("ETag")
        if etag and _revalidatable(response.headers):
            self.listing_cache[url] = (etag, data)
        else:
            self.listing_cache.pop(url, None)
        return data

    def _entry(self, parent: str, child: dict[str, Any]) -> RemoteEntry | None:
        name = str(child.get("display_name") or child.get("name") or "")
        problem = name_problem(name)
        if problem:
            self.skip(join(parent, name), problem)
            return None
        path = join(parent, name)
        is_dir = str(child.get("type", "")).upper() == "FOLDER"
        refs = found if isinstance(found := child.get("refs"), dict) else {}
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

    async def _walk(self, path: str, out: list[RemoteEntry], *, top: bool = True) -> bool:
        """Append the entries under ``path`` to ``out``; False when a sub-folder vanished before it was listed.

        The parent's listing can name a folder that a delete removed a moment before (the view catches up
        between the two GETs); it is left out with its contents rather than failing the whole listing.
        """
        data = await self._folder(path, gone_ok=not top)
        if data is None:
            return False
        folders = []
        for child in data.get("children") or []:
            entry = self._entry(path, child) if isinstance(child, dict) else None
            if entry is None:
                continue
            out.append(entry)
            if entry.is_dir:
                folders.append(entry.path)
                self._folders.add(entry.path)
        for folder in folders:  # HTTP/1.0, one connection per request: stay sequential
            if not await self._walk(folder, out, top=False):
                out[:] = [e for e in out if not in_scope(e.path, folder)]
                self._forget_folders(folder)
        return True

    async def list_tree(self, root: str = "") -> list[RemoteEntry]:
        root = check_path(root, what="root", allow_root=True)
        out: list[RemoteEntry] = []
        await self._walk(root, out)
        if root:
            self._folders.add(root)
        return sorted(out, key=lambda e: e.path)

    async def stat(self, path: str) -> RemoteEntry | None:
        path = check_path(path)
        response = await self.call("stat", "GET", self._url(path), expect=(404,))
        if response.status_code == 404:
            return None
        data = decode_json(self.name, "GET", self._url(path), response)
        return self._entry(parent_of(path), {**data, "display_name": basename(path)})

    async def _in_view(self, path: str) -> bool:
        """Whether PrusaLink's file view has ``path`` (HEAD: answered from the view alone, no body, no auth)."""
        response = await self.call("stat", "HEAD", self._url(path), expect=(404,))
        return response.status_code != 404

    async def _settled(self, path: str, *, present: bool) -> bool:
        """Poll the view (bounded by ``settle_delays``) until ``path`` is in it, or out of it; False on timeout."""
        for delay in (*self.settle_delays, None):
            if await self._in_view(path) == present:
                return True
            if delay is None:
                break
            await self._sleep(delay)
        return False

    # ------------------------------------------------------------------ folders

    async def _ensure_folder(self, folder: str) -> None:
        """Make ``folder`` and its missing parents one level at a time (see the module docstring for why)."""
        if folder == "" or folder in self._folders:
            return
        async with self._folder_lock:
            await self._make_levels(folder)

    async def _make_levels(self, folder: str) -> None:
        """With the lock held: find the deepest folder in the view, then make each level below it."""
        missing: list[str] = []
        level = folder
        while level and level not in self._folders and not await self._in_view(level):
            missing.append(level)
            level = parent_of(level)
        for each in reversed(missing):
            await self._make_level(each)
        while level:
            self._folders.add(level)
            level = parent_of(level)

    async def _make_level(self, path: str) -> None:
        """One ``Create-Folder`` PUT (its parent is in the view), then wait until the folder is in the view too."""
        url = self._url(path)
        try:
            response = await self.call(
                "mkdir", "PUT", url, content=b"", headers=FOLDER_HEADERS, expect=(409,)
            )
        except UpstreamError as exc:
            if exc.status == 500:  # 0.8.1's mkdir over an existing file: a bare 500
                await self._refuse_file_in_the_way(path)
            raise
        if response.status_code == 409:  # "already exists" (spec, Buddy); 0.8.1 answers 201 then
            await self._refuse_file_in_the_way(path)
        if not await self._settled(path, present=True):
            raise self.error(
                UpstreamError,
                "PUT",
                url,
                f"folder {path!r} was made but PrusaLink still does not list it after "
                f"{sum(self.settle_delays):.0f} s: {RESTART_HINT}",
            )
        self._folders.add(path)

    async def _refuse_file_in_the_way(self, path: str) -> None:
        existing = await self.stat(path)
        if existing is not None and not existing.is_dir:
            raise self.error(UpstreamConflict, "PUT", self._url(path), "a file with that name exists", 409)

    def _forget_folders(self, path: str) -> None:
        """Drop ``path`` and everything under it from the folders known to be in the view."""
        self._folders = {f for f in self._folders if not (f == path or f.startswith(path + "/"))}

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
        await self._ensure_folder(parent_of(path))
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
        entry = await self._verify(path, size)
        notes = [f"sent {body.passes} times"] if body.passes > 1 else []
        return UploadResult(path=path, size=size, mtime=entry.mtime, verified=True, notes=notes)

    async def _verify(self, path: str, size: int) -> RemoteEntry:
        """The uploaded file's entry once the view shows it with ``size`` bytes (bounded by ``verify_delays``).

        Right after a PUT the view still has the old state for a moment: a new file is 404 and a replaced one keeps
        its old size. Only an answer that persists past the wait counts.
        """
        entry: RemoteEntry | None = None
        for delay in (*self.verify_delays, None):
            entry = await self.stat(path)
            if entry is not None and entry.size == size:
                return entry
            if delay is None:
                break
            await self._sleep(delay)
        url = self._url(path)
        waited = f"{sum(self.verify_delays):.0f} s"
        if entry is None:
            # the usual cause is a folder missing from the view: check the folders again next time
            self._forget_folders(parent_of(path))
            raise UploadVerificationError(
                self.name,
                "GET",
                url,
                f"the uploaded file did not appear on the printer within {waited}: {RESTART_HINT}",
            )
        held = "no size" if entry.size is None else f"{entry.size} bytes"
        raise UploadVerificationError(
            self.name, "GET", url, f"printer holds {held} {waited} after upload, {size} were sent"
        )

    # ------------------------------------------------------------------ delete / mkdir / download

    def _entry_url(self, entry: RemoteEntry) -> str:
        return self._url(check_path(entry.path))

    async def _delete(self, entry: RemoteEntry) -> None:
        """DELETE, idempotent: 404 means the view no longer has it; a 500 counts only if the entry stays.

        PrusaLink looks the path up in its view, then unlinks it on disk; for an entry already gone from disk
        (deleted a moment ago, still in the view) the unlink fails and it answers 500 until the view catches up.
        A 404 needs no re-check: it comes from that same view, which HEAD would ask again.
        """
        self._refuse_read_only("DELETE", entry.path)
        url = self._entry_url(entry)
        try:
            await self.call("delete", "DELETE", url, expect=(404,))
        except UpstreamError as exc:
            if exc.status != 500 or not await self._settled(check_path(entry.path), present=False):
                raise
            log.debug("%s: DELETE %s answered 500 but the entry is gone; counted as deleted", self.name, url)

    async def delete_file(self, entry: RemoteEntry) -> None:
        await self._delete(entry)

    async def delete_folder(self, entry: RemoteEntry) -> None:
        """Deletes an emptied folder; no ``Force``, so a folder that still holds files gives 409."""
        await self._delete(entry)
        self._forget_folders(entry.path)

    async def make_folder(self, path: str) -> None:
        """Make ``path`` (and missing parents, level by level); fine if it exists, a conflict if a file does."""
        path = check_path(path)
        self._refuse_read_only("PUT", path)
        async with self._folder_lock:
            await self._make_levels(parent_of(path))
            await self._make_level(path)

    async def download(
        self, entry: RemoteEntry, dest: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        check_path(entry.path)
        if entry.is_dir or not entry.download_ref:
            raise self.error(UpstreamValidation, "GET", self._entry_url(entry), "no download link for entry")
        url = same_origin_path(self.http.base_url, entry.download_ref)
        return await self.stream_to_file(url, dest, progress=progress)


def _revalidatable(headers: Mapping[str, str]) -> bool:
    """Whether a listing can be revalidated with its ETag later: served in a later second than the last change.

    PrusaLink 0.8 derives the ETag from ``Last-Modified`` in whole seconds, so a change in the second the listing
    was served from keeps the ETag (a 304 for new content). Once ``Date`` is past ``Last-Modified``, every later
    change, including one its inotify loop has yet to handle, falls in a later second and changes the ETag.
    """
    try:
        served = parsedate_to_datetime(headers["Date"])
        changed = parsedate_to_datetime(headers["Last-Modified"])
    except (KeyError, TypeError, ValueError, IndexError):
        return False
    return served > changed
